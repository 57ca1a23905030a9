"""Where the image encoder runs: PyTorch, or a CPU inference runtime (ONNX Runtime, OpenVINO) on its ONNX export.

On a CPU without native bfloat16 the encoder runs in float32, and there an inference runtime built for CPUs
runs the same network, to float rounding, about twice as fast as PyTorch (docs/experiments.md, issue 42): it
fuses the depthwise convolutions with their activations and picks kernels for the CPU it finds. ``--runtime``
chooses (:data:`RUNTIMES`; default ``auto``), beside ``--precision``.

How ``auto`` decides, cheaply (nothing is timed at start-up):

1. on a GPU, where the precision ``auto`` resolves to is not float32 (bfloat16 where the CPU runs it natively,
   see :mod:`captioner.precision`), or where ``--precision fp32`` is given: PyTorch, as before (an explicit
   ``fp32`` keeps its promise: the results of earlier releases, bit for bit);
2. else the first installed runtime of :data:`AUTO_ORDER` (``pip install "captioner[fast]"`` installs them),
   in the order measured fastest on CPUs without native bfloat16;
3. else PyTorch in float32.

A runtime that is installed but fails to load (a broken install, a model it cannot compile, features that
disagree with PyTorch's) is skipped with a one-line warning, and the next one is tried; PyTorch always loads.
An explicit ``--runtime`` that cannot load is an error instead, in one line.

The runtimes read the encoder's ONNX export, made once per encoder and cached in ``CACHE/encoders/`` beside the
feature cache (:func:`captioner.features.default_cache_dir`), under a key of the weights' digest, the
preprocessing and the exporter's versions, so a changed encoder never meets a stale export. It is written to a
temporary name and renamed when complete; a cached file that cannot be loaded, or gives other features than
PyTorch on a probe image, is rebuilt with a warning. Exports are never shipped.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import queue
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__
from .encoder import ImageEncoder
from .features import PARTIAL, default_cache_dir
from .io import one_line, remove_orphan
from .options import AUTO_ORDER, CPU_RUNTIMES, FAST_EXTRA, INSTALL, RUNTIMES
from .precision import Precision, resolve_precision

MODULES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}  # what each one imports
OPSET = 17  # ONNX Runtime and OpenVINO both read it; part of the export's cache key
EXPORT_FORMAT = 1  # bump when the export itself changes (inputs, outputs, options): old exports are then unused
PROBE_TOLERANCE = 1e-3  # max |feature difference| from PyTorch on the probe image, relative to the largest feature


@dataclass(frozen=True)
class Runtime:
    """A resolved runtime: its name (never ``auto``), the precision the encoder runs at, and why it was chosen."""

    name: str
    precision: Precision
    reason: str = "asked for"

    def __post_init__(self) -> None:
        if self.name not in RUNTIMES[1:]:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES[1:])}, not {str(self.name)[:40]!r}")
        if self.name != "torch" and (self.precision.name, self.precision.device) != ("fp32", "cpu"):
            raise ValueError(
                f"runtime {self.name} runs float32 on the CPU only, not {self.precision.name} on "
                f"{self.precision.device}; use --runtime torch for another precision"
            )

    def autocast(self):
        """The precision's autocast (for the VQA model, which always runs in PyTorch)."""
        return self.precision.autocast()

    def __str__(self) -> str:
        return f"{self.name} ({self.reason}), precision {self.precision}"


def installed(name: str) -> bool:
    """Whether runtime ``name``'s packages are installed; looked up without importing them (cheap)."""
    if name == "torch":
        return True
    for module in MODULES[name]:
        if module in sys.modules:
            if sys.modules[module] is None:  # as Python marks a module that must not be imported
                return False
            continue
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def resolve_runtime(
    requested: str | Runtime = "auto",
    precision: str | Precision = "auto",
    device: str = "cpu",
    native: tuple[str, ...] | None = None,
) -> list[Runtime]:
    """The runtimes to try, in order, for ``requested`` (one of :data:`RUNTIMES`) at ``precision``: for ``auto``
    the installed CPU runtimes that apply (see the module docstring), then PyTorch; an explicit one alone.
    ValueError (one line) for an unknown name, a runtime not installed, or a precision it cannot run. ``native``:
    the precisions ``device`` runs natively (default: :func:`captioner.precision.native_precisions`)."""
    if isinstance(requested, Runtime):
        return [requested]
    if requested not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {str(requested)[:40]!r}")
    if requested in CPU_RUNTIMES:
        if not installed(requested):
            raise ValueError(f"runtime {requested} is not installed: {INSTALL[requested]} (or use --runtime auto)")
        if precision == "auto" and device == "cpu":
            return [Runtime(requested, Precision("fp32", "cpu", f"auto: {requested} runs float32"))]
        resolved = resolve_precision(precision, device, native)  # an unknown or non-native one: its own error
        if (resolved.name, device) != ("fp32", "cpu"):
            raise ValueError(
                f"runtime {requested} runs float32 on the CPU only, not {resolved.name} on {device}; "
                "use --precision fp32 (or auto), or --runtime torch"
            )
        return [Runtime(requested, resolved)]
    resolved = resolve_precision(precision, device, native)
    if requested == "torch":
        return [Runtime("torch", resolved)]
    if device != "cpu":
        return [Runtime("torch", resolved, "auto: on a GPU")]
    if resolved.name != "fp32":
        return [Runtime("torch", resolved, f"auto: {resolved.name} runs natively in PyTorch here")]
    if precision != "auto":
        return [Runtime("torch", resolved, "auto: precision fp32 asked for, PyTorch's float32 bit for bit")]
    found = [name for name in AUTO_ORDER if installed(name)]
    runtimes = [Runtime(name, resolved, "auto: the fastest installed CPU runtime") for name in found]
    return runtimes + [
        Runtime(
            "torch",
            resolved,
            "auto: no other runtime loaded"
            if found
            else f"auto: no CPU runtime installed ({FAST_EXTRA} installs them)",
        )
    ]


# ---------------------------------------------------------------- the ONNX export


def export_key(encoder: ImageEncoder) -> str:
    """What the export depends on: the weights (their digest), the preprocessing inside the graph, and the
    versions of the exporter and of this export's format."""
    spec, pre = encoder.spec, encoder.preprocessing
    text = (
        f"{spec.name}|{encoder.trunk_digest()}|{pre.image_size}|{pre.mean}|{pre.std}|{pre.resize}|opset={OPSET}"
        f"|torch={torch.__version__}|captioner={__version__}|format={EXPORT_FORMAT}"
    )
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def export_path(encoder: ImageEncoder, cache_dir: str | Path | None = None) -> Path:
    """Where ``encoder``'s export is cached: ``CACHE/encoders/NAME-KEY.onnx``."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / "encoders" / f"{encoder.spec.name}-{export_key(encoder)}.onnx"


def export_onnx(encoder: ImageEncoder, path: Path) -> Path:
    """Export a frozen ``encoder`` (uint8 images ``(N, 3, S, S)`` in, region features ``(N, R, D)`` out; the
    normalisation inside the graph) to ``path``, atomically: written under a temporary name, then renamed.
    Killed writers' temporary files are deleted by the next export."""
    if encoder.trainable_blocks:
        raise ValueError("only a frozen encoder is exported (training runs in PyTorch)")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"*{PARTIAL}"):
        remove_orphan(stale, stale.name[: -len(PARTIAL)].rpartition(".")[2])
    partial = path.with_suffix(f".{os.getpid()}{PARTIAL}")
    size = encoder.preprocessing.image_size
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and constant-folding notes
            torch.onnx.export(
                encoder,
                (torch.zeros(1, 3, size, size, dtype=torch.uint8),),
                str(partial),
                dynamo=False,
                opset_version=OPSET,
                input_names=["images"],
                output_names=["features"],
                dynamic_axes={"images": {0: "n"}, "features": {0: "n"}},
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- sessions


def _onnxruntime_session(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    # Threads sleep between runs rather than spin: the decoder and the image reader need the cores then.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda pixels: session.run(None, {"images": pixels})[0]  # thread-safe, as ONNX Runtime sessions are


def _openvino_session(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import openvino as ov

    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
    }  # f32: never OpenVINO's own bf16 on AMX; no pinning on a shared CPU
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    requests: queue.SimpleQueue = queue.SimpleQueue()  # an infer request serves one thread at a time (the app)

    def run(pixels: np.ndarray) -> np.ndarray:
        try:
            request = requests.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        try:
            return request.infer({0: pixels})[0].copy()  # the request reuses its output buffer
        finally:
            requests.put(request)

    return run


SESSIONS = {"onnxruntime": _onnxruntime_session, "openvino": _openvino_session}


class ExportedEncoder:
    """An :class:`ImageEncoder` run by a CPU runtime on its ONNX export: called like it (uint8 images in, float32
    region features out) and read like it; the PyTorch encoder stays as ``torch_encoder`` (about 20 MB), for its
    preprocessing and for what only PyTorch runs (training, the trunk)."""

    def __init__(self, encoder: ImageEncoder, run: Callable[[np.ndarray], np.ndarray]):
        self.torch_encoder = encoder
        self._run = run

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images ``(N, 3, S, S)`` to region features ``(N, R, feature_dim)``, float32."""
        return torch.from_numpy(self._run(np.ascontiguousarray(images.numpy())))

    def preprocess(self, image) -> torch.Tensor:
        return self.torch_encoder.preprocess(image)

    @property
    def spec(self):
        return self.torch_encoder.spec

    @property
    def preprocessing(self):
        return self.torch_encoder.preprocessing

    @property
    def feature_dim(self) -> int:
        return self.torch_encoder.feature_dim

    def __getattr__(self, name: str):
        """Anything else an :class:`ImageEncoder` has (``mean``, ``backbone``, ``trunk_digest``...) is read from the
        PyTorch encoder, so code written for ``model.encoder`` keeps working whichever runtime runs it."""
        if name == "torch_encoder":  # not set yet (during unpickling, copying): no recursion
            raise AttributeError(name)
        return getattr(self.torch_encoder, name)


def probe_images(encoder: ImageEncoder, n: int = 2) -> torch.Tensor:
    """A fixed batch of random uint8 images at the encoder's size, to compare a runtime's features with PyTorch's."""
    size = encoder.preprocessing.image_size
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def check_features(encoder: ImageEncoder, run: Callable[[np.ndarray], np.ndarray]) -> float:
    """The max feature difference between ``run`` and PyTorch on :func:`probe_images`, relative to the largest
    feature; ValueError when it is above :data:`PROBE_TOLERANCE` (a corrupt export, a runtime computing wrong)."""
    images = probe_images(encoder)
    with torch.inference_mode():
        expected = encoder(images).numpy()
    got = run(images.numpy())
    if got.shape != expected.shape:
        raise ValueError(f"features of shape {got.shape}, not {expected.shape}")
    difference = float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-6))
    if not difference <= PROBE_TOLERANCE:  # also NaN
        raise ValueError(f"features differ from PyTorch's by {difference:.2g} (relative; at most {PROBE_TOLERANCE})")
    return difference


def open_exported(
    encoder: ImageEncoder, name: str, cache_dir: str | Path | None = None, threads: int | None = None
) -> ExportedEncoder:
    """``encoder`` on CPU runtime ``name``, from its cached export (made now when there is none); the features are
    checked against PyTorch's on a probe image. A cached export that fails to load or to match is rebuilt once,
    with a warning. Raises (ImportError, ValueError, RuntimeError, ...) when the runtime cannot run it."""
    threads = threads or torch.get_num_threads()
    path = export_path(encoder, cache_dir)
    importlib.import_module(MODULES[name][0])  # a missing runtime is an ImportError, before any export
    fresh = not path.exists()
    if fresh:
        export_onnx(encoder, path)
    try:
        run = SESSIONS[name](path, threads)
        check_features(encoder, run)
    except Exception as e:  # whatever the runtime raises on a bad file (its own kinds), the file is rebuilt once
        if fresh:
            raise
        print(
            f"captioner: warning: {path}: cached encoder export unusable ({one_line(e)[:200]}); rebuilding it",
            file=sys.stderr,
        )
        path.unlink(missing_ok=True)
        export_onnx(encoder, path)
        run = SESSIONS[name](path, threads)
        check_features(encoder, run)
    return ExportedEncoder(encoder, run)


def load_runtime(
    encoder: ImageEncoder, runtimes: list[Runtime], cache_dir: str | Path | None = None
) -> tuple[ImageEncoder | ExportedEncoder, Runtime]:
    """The first of ``runtimes`` (as :func:`resolve_runtime` orders them) that loads, with ``encoder`` on it. One
    that fails is skipped with a one-line warning when there is another to try; the last one's failure is a
    ValueError in one line (PyTorch, auto's last, always loads)."""
    for i, runtime in enumerate(runtimes):
        if runtime.name == "torch":
            return runtime.precision.prepare(encoder), runtime
        try:
            return open_exported(encoder, runtime.name, cache_dir), runtime
        except Exception as e:  # noqa: BLE001 - a runtime that fails for any reason is skipped, or reported
            message = f"runtime {runtime.name} failed to load ({type(e).__name__}: {one_line(e)[:200]})"
            if i + 1 == len(runtimes):
                raise ValueError(f"{message}; use --runtime torch") from None
            print(f"captioner: warning: {message}; using {runtimes[i + 1].name}", file=sys.stderr)
    raise ValueError("no runtime to load")
