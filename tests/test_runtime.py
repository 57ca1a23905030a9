"""The encoder's runtimes (captioner.runtime): each installed one gives PyTorch's features to tolerance, ``auto``
falls back when a runtime is missing or fails to load, and a bad cached export is rebuilt."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from conftest import EXAMPLE_IMAGE
from torch import nn

from captioner import runtime as rt
from captioner.cli.main import main
from captioner.encoder import EncoderSpec, ImageEncoder, build_encoder
from captioner.options import CPU_RUNTIMES
from captioner.precision import Precision
from captioner.runtime import (
    SESSIONS,
    ExportedEncoder,
    Runtime,
    export_path,
    installed,
    load_runtime,
    open_exported,
    probe_images,
    resolve_runtime,
)

NO_BF16 = ("fp32",)  # a CPU without native bfloat16: where auto takes a CPU runtime


def tiny_encoder(seed: int = 0) -> ImageEncoder:
    """A 3-layer CNN (strided, depthwise with batch norm, pointwise) as a frozen encoder of 16-d region features."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 16, 1),
    )
    net[3].running_mean.uniform_(-0.5, 0.5)
    net[3].running_var.uniform_(0.5, 2.0)
    spec = EncoderSpec("tiny", 16, 32, build=lambda weights: net, stages=lambda m: list(m))
    return ImageEncoder(spec, net)


def runtime_installed(name: str) -> None:
    if not installed(name):
        pytest.skip(f"{name} is not installed ({rt.FAST_EXTRA}); CI installs it")


def max_relative_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("name", CPU_RUNTIMES)
@pytest.mark.parametrize("which", ["tiny", "efficientnet-lite0"])
def test_each_installed_runtime_gives_pytorchs_features(name, which, tmp_path):
    runtime_installed(name)
    encoder = tiny_encoder() if which == "tiny" else build_encoder(which)
    exported = open_exported(encoder, name, tmp_path)
    images = torch.randint(
        0,
        256,
        (3, 3, encoder.preprocessing.image_size, encoder.preprocessing.image_size),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(1),
    )
    with torch.inference_mode():
        expected = encoder(images)
    got = exported(images)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert max_relative_difference(got, expected) < 1e-4  # float rounding of other kernels, not bit for bit
    assert exported.preprocessing == encoder.preprocessing and exported.spec is encoder.spec
    assert not list(tmp_path.rglob("*.partial"))  # written atomically: no temporary file is left


def test_auto_takes_the_first_installed_runtime_where_bf16_is_not_native(monkeypatch):
    monkeypatch.setattr(rt, "installed", lambda name: True)
    runtimes = resolve_runtime("auto", "auto", native=NO_BF16)
    assert [r.name for r in runtimes] == [*rt.AUTO_ORDER, "torch"]  # PyTorch last: it always loads
    assert all(r.precision.name == "fp32" for r in runtimes)
    # where bf16 is native, and with an explicit fp32 (bit for bit as before), PyTorch alone
    assert [r.name for r in resolve_runtime("auto", "auto", native=("fp32", "bf16"))] == ["torch"]
    assert resolve_runtime("auto", "auto", native=("fp32", "bf16"))[0].precision.name == "bf16"
    assert [r.name for r in resolve_runtime("auto", "fp32", native=NO_BF16)] == ["torch"]
    assert [r.name for r in resolve_runtime("torch", "auto", native=NO_BF16)] == ["torch"]


def test_auto_skips_a_runtime_that_is_not_installed(monkeypatch):
    for module in ("onnxruntime", "openvino"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    assert not installed("onnxruntime") and not installed("openvino") and installed("torch")
    runtimes = resolve_runtime("auto", "auto", native=NO_BF16)
    assert [r.name for r in runtimes] == ["torch"] and "no CPU runtime installed" in runtimes[0].reason
    with pytest.raises(ValueError, match=r"runtime onnxruntime is not installed: pip install \"captioner\[fast\]\""):
        resolve_runtime("onnxruntime")


def test_auto_falls_back_when_a_runtime_fails_to_load(monkeypatch, tmp_path, capsys):
    fp32 = Precision("fp32", reason="auto")
    runtimes = [Runtime("onnxruntime", fp32), Runtime("openvino", fp32), Runtime("torch", fp32)]

    def broken(path, threads):
        raise RuntimeError("cannot compile\nmore detail")

    monkeypatch.setitem(SESSIONS, "onnxruntime", broken)  # installed, but fails to load
    monkeypatch.setitem(sys.modules, "openvino", None)  # said to be installed, but its import fails
    monkeypatch.setattr(rt, "default_cache_dir", lambda: tmp_path)
    encoder, chosen = load_runtime(tiny_encoder(), runtimes)
    assert chosen.name == "torch" and isinstance(encoder, ImageEncoder)
    warnings = capsys.readouterr().err.strip().splitlines()
    assert (
        len(warnings) == 2
        and "runtime onnxruntime failed to load (RuntimeError: cannot compile); using openvino" in warnings[0]
        and "runtime openvino failed to load (ModuleNotFoundError" in warnings[1]
    )
    with pytest.raises(ValueError, match="runtime onnxruntime failed to load .*; use --runtime torch"):
        load_runtime(tiny_encoder(), runtimes[:1])  # an explicit runtime that fails is an error, in one line


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_a_corrupt_export_cache_is_rebuilt_with_a_warning(name, tmp_path, capsys):
    runtime_installed(name)
    encoder = tiny_encoder()
    open_exported(encoder, name, tmp_path)
    path = export_path(encoder, tmp_path)
    good = path.read_bytes()
    images = probe_images(encoder, 3)
    with torch.inference_mode():
        expected = encoder(images)
    for bad in (b"not an onnx file", good[: len(good) // 2]):  # garbage, and a truncated file
        path.write_bytes(bad)
        exported = open_exported(encoder, name, tmp_path)
        assert "cached encoder export unusable" in capsys.readouterr().err
        assert max_relative_difference(exported(images), expected) < 1e-4
        assert path.read_bytes() == good  # the same export again
    # a loadable export of other weights (same shapes) fails the probe against PyTorch, and is rebuilt too
    rt.export_onnx(tiny_encoder(seed=1), tmp_path / "other.onnx")
    path.write_bytes((tmp_path / "other.onnx").read_bytes())
    exported = open_exported(encoder, name, tmp_path)
    assert "features differ from PyTorch's" in capsys.readouterr().err
    assert max_relative_difference(exported(images), expected) < 1e-4


def test_the_export_is_keyed_by_the_weights(tmp_path):
    a, b = tiny_encoder(0), tiny_encoder(1)
    assert export_path(a, tmp_path) == export_path(tiny_encoder(0), tmp_path) != export_path(b, tmp_path)
    assert export_path(a, tmp_path).parent == tmp_path / "encoders"


def test_an_exported_encoder_serves_a_pipeline(monkeypatch):
    """The pipeline reads an exported encoder like a PyTorch one; sharing one needs the Runtime it was loaded on."""
    from captioner.pipeline import Pipeline

    encoder = tiny_encoder()
    exported = ExportedEncoder(encoder, lambda pixels: np.zeros((len(pixels), 16, 16), np.float32))
    runtime = Runtime("onnxruntime", Precision("fp32"))
    pipeline = Pipeline(exported, runtime=runtime)
    assert pipeline.precision == "fp32" and pipeline.image_size == 32 and pipeline.runtime is runtime
    from PIL import Image

    assert pipeline.preprocess([Image.new("RGB", (40, 30))]).shape == (1, 16, 16)
    with pytest.raises(ValueError, match="comes with the Runtime"):
        Pipeline(exported)


def test_bad_runtime_values_are_one_line_errors(capsys):
    with pytest.raises(ValueError, match="runtime must be one of auto, torch, onnxruntime, openvino, not 'fast'"):
        resolve_runtime("fast")
    with pytest.raises(ValueError, match="runs float32 on the CPU only"):
        Runtime("openvino", Precision("bf16"))
    if installed("onnxruntime"):
        with pytest.raises(ValueError, match="precision bf16: this CPU does not run it natively"):
            resolve_runtime("onnxruntime", "bf16", native=NO_BF16)
        with pytest.raises(ValueError, match="runtime onnxruntime runs float32 on the CPU only, not bf16"):
            resolve_runtime("onnxruntime", "bf16", native=("fp32", "bf16"))
    with pytest.raises(SystemExit) as exit_:
        main(["caption", "x.jpg", "--runtime", "fast"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'fast'" in err


def test_help_states_the_runtime_default(capsys):
    for command in ("caption", "ask", "eval", "app"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--runtime {auto,torch,onnxruntime,openvino}" in text and "else PyTorch (default: auto)" in text


def test_the_runtime_is_reported_with_verbose(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "openvino", types.ModuleType("openvino"))  # "installed", but broken
    monkeypatch.setattr(rt, "installed", lambda name: name != "onnxruntime")
    monkeypatch.setattr(rt, "resolve_precision", lambda p, d, n: Precision("fp32", reason="auto: no native bf16"))
    code = main(["caption", str(EXAMPLE_IMAGE), "--runtime", "auto", "-v", "-q"])
    out = capsys.readouterr()
    assert code == 0 and "a baseball player swinging a bat at a ball" in out.out
    assert "runtime openvino failed to load" in out.err and "runtime torch (auto: no other runtime loaded)" in out.err
