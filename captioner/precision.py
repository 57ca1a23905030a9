"""Numeric precision of inference: float32, or bfloat16 / float16 autocast where the hardware runs it natively.

Reduced precision pays only where the hardware computes in it: a CPU with AVX512-BF16 or AMX (recent
Intel Xeon, AMD Zen 4 and later) or ARM's BF16 extension runs the encoder's convolutions in bfloat16 at
about twice its float32 speed; elsewhere PyTorch emulates bfloat16, about twenty times slower than
float32 (measured: 3 against 54 images/s on an AVX2-only Zen 3). So ``auto`` takes bfloat16 only where it
is native, and an explicit precision the machine cannot run natively is refused, not emulated.

What runs at the reduced precision is the image encoder (its convolutions, most of the time spent) and
the VQA model's image path and classifier; the caption decoder always runs in float32. Measured with
bfloat16 on the dev splits (docs/experiments.md), the encoder alone moved CIDEr by -0.0045 (Flickr8k)
and -0.0013 (COCO), within the 0.005 budget; the decoder's beam-search step at bfloat16 as well moved
Flickr8k by -0.0055, beyond it. Answer probabilities are computed in float32 from the logits. ``fp32``
runs no autocast at all: its results are those of the code without this module, bit for bit.

int8 was tried and dropped (see docs/experiments.md): PyTorch's x86 backend ran the encoder 4x slower
than float32 on an AVX2 CPU, its oneDNN backend faster but wrong without VNNI (int16 saturation), and
both APIs are deprecated in PyTorch 2.14.
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass
from typing import ContextManager

import torch
from torch import nn

from .io import shorten
from .options import PRECISION_HELP, PRECISIONS  # noqa: F401 (torch-free, so there: `--help` states them)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_capabilities() -> dict:
    """The CPU's instruction-set extensions as PyTorch sees them (``torch.cpu.get_capabilities()``); empty where
    this PyTorch cannot tell, which leaves only float32."""
    get = getattr(torch.cpu, "get_capabilities", None)
    try:
        return dict(get()) if get else {}
    except RuntimeError:
        return {}


def native_cpu_precisions(capabilities: dict | None = None, machine: str | None = None) -> tuple[str, ...]:
    """The precisions this CPU computes natively, float32 first. ARM's BF16 extension is read from oneDNN's own
    check (there, unlike on x86, it never means emulation)."""
    caps = cpu_capabilities() if capabilities is None else capabilities
    machine = machine or platform.machine().lower()
    native = ["fp32"]
    if machine in ("arm64", "aarch64"):
        bf16 = bool(caps.get("bf16")) or (
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    else:
        bf16 = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    if bf16:
        native.append("bf16")
    if caps.get("avx512_fp16") or caps.get("amx_fp16"):
        native.append("fp16")
    return tuple(native)


def native_precisions(device: str = "cpu") -> tuple[str, ...]:
    """The precisions ``device`` ("cpu" or "cuda") computes natively, float32 first."""
    if device == "cuda":
        return ("fp32", "fp16", "bf16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    return native_cpu_precisions()


@dataclass(frozen=True)
class Precision:
    """A resolved precision: its name (never ``auto``), the device type it runs on and why it was chosen."""

    name: str
    device: str = "cpu"
    reason: str = "asked for"

    def __post_init__(self) -> None:
        if self.name not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}, not {self.name!r}")

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self) -> ContextManager:
        """Autocast to this precision; for fp32 nothing at all, so results are exactly those of plain code."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)

    def prepare(self, module: nn.Module) -> nn.Module:
        """Cast a frozen inference module's weights to this precision, once, in place. Autocast would cast them at
        every call, to the same values (so the outputs are identical, as tested): this saves that work, about a
        tenth of the bf16 encoder's time on the CPU. The module must then be called under :meth:`autocast`."""
        if self.name != "fp32":
            for p in module.parameters():
                p.requires_grad_(False)
                p.data = p.data.to(self.dtype)
        return module

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def resolve_precision(
    requested: str | Precision = "auto", device: str = "cpu", native: tuple[str, ...] | None = None
) -> Precision:
    """The precision to run: ``auto`` picks bf16 where it is native (then fp16 on a GPU), else fp32; an explicit
    one must be native to ``device`` (ValueError, one line, otherwise). ``native`` defaults to
    :func:`native_precisions` of ``device``."""
    if isinstance(requested, Precision):
        return requested
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {shorten(str(requested))!r}")
    native = native_precisions(device) if native is None else native
    where = "this GPU" if device == "cuda" else "this CPU"
    if requested == "auto":
        for name in ("bf16", "fp16") if device == "cuda" else ("bf16",):
            if name in native:
                return Precision(name, device, f"auto: {where} runs {name} natively")
        return Precision("fp32", device, f"auto: {where} has no native bf16")
    if requested not in native:
        raise ValueError(
            f"precision {requested}: {where} does not run it natively (native here: "
            f"{', '.join(native)}); use --precision auto or fp32"
        )
    return Precision(requested, device)
