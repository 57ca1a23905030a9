"""What a training run checks before it does any work, so that a mistake costs one line, not an epoch: the run
folder, the memory the model will need (and the model, new or resumed), and a vocabulary that kept some words."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..checkpoint import load_checkpoint

BYTES_PER_PARAMETER = 16  # float32 weights, their gradients and Adam's two moments


def check_run_folder(out: Path, saved_training: dict | None, cfg: Any, resume: bool, overwrite: bool) -> None:
    """Refuse to silently replace a finished run, or to resume one with other architecture settings
    (which would build a different model than the one in the checkpoint). ``cfg`` is the run's RunConfig."""
    if out.exists() and not out.is_dir() or any(p.exists() and not p.is_dir() for p in out.parents):
        raise ValueError(f"--out {out}: a file is in the way of the run folder")
    if resume:
        changed = [
            k
            for k in cfg.ARCHITECTURE
            if saved_training is not None
            and k in saved_training
            and saved_training[k] != json.loads(json.dumps(getattr(cfg, k)))
        ]
        if changed:
            raise ValueError(
                f"--resume: {out / 'last'} was trained with "
                + ", ".join(f"--{k.replace('_', '-')} {saved_training[k]}" for k in changed)
                + "; resume with the same settings"
            )
    elif not overwrite and any((out / d / "config.json").exists() for d in ("best", "last")):
        raise ValueError(f"{out} already holds a run: add --resume to continue it or --overwrite to replace it")


def available_memory() -> int | None:
    """Bytes this process may still allocate: the machine's available memory, or less under a ``ulimit -v``."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            limits += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        with open(f"/proc/{os.getpid()}/statm") as f:  # what the process already maps counts against the limit
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limits.append(soft - used)
    return min(limits) if limits else None


def check_memory(build: Callable[[], nn.Module], what: str = "the model") -> None:
    """ValueError, in one line, when the model ``build()`` makes cannot train in this machine's memory. The model
    is built on the meta device (shapes only, no memory), so the check costs nothing even for absurd sizes."""
    with torch.device("meta"):
        parameters = sum(p.numel() for p in build().parameters())
    need, have = parameters * BYTES_PER_PARAMETER, available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"{what} has {parameters / 1e6:,.0f}M parameters: training needs about {need / 2**30:,.1f} "
            f"GiB for them, their gradients and Adam's state, more than the {have / 2**30:,.1f} GiB "
            "available; choose smaller sizes"
        )


def check_vocabulary(size: int, specials: int, min_count: int) -> None:
    """ValueError when ``--min-count`` left no word: every text would read as ``<unk>``."""
    if size <= specials:
        raise ValueError(
            f"--min-count {min_count}: no word of the training text is seen that often, so the "
            "vocabulary would be empty; lower it"
        )


def new_or_resumed(
    model_class: Callable[[Any], nn.Module], config_class: type, last: Path | None, config: Callable[[], Any], what: str
) -> tuple[Any, nn.Module]:
    """(config, model): a new one of ``config()``'s shape, its memory checked first (:func:`check_memory`), or on
    resume the one saved in ``last`` (whose settings the run folder's check found the same)."""
    if last is None:
        shape = config()
        check_memory(lambda: model_class(shape), what)
        return shape, model_class(shape)
    weights, saved = load_checkpoint(last)
    shape = config_class(**saved["model"])
    model = model_class(shape)
    model.load_state_dict(weights)
    return shape, model
