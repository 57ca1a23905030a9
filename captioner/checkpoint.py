"""Checkpoints as safetensors + JSON: tensors and plain data only, so loading never unpickles code.

A checkpoint is a folder holding ``model.safetensors`` and ``config.json`` (plus whatever
JSON files the caller adds, such as ``vocab.json``). Every file is written to a temporary
name and renamed into place, so a run killed mid-save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """A temporary file name beside ``path`` (whose folders are created) to write to; when the block
    completes it is renamed over ``path``, and when the block fails it is deleted, so ``path`` holds the
    old file or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically."""
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2)))


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write a safetensors file atomically (tensors are made contiguous and unshared first)."""
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(clean, tmp))


def save_checkpoint(directory: str | Path, model: torch.nn.Module | dict[str, torch.Tensor], config: dict[str, Any],
                    extra_json: dict[str, Any] | None = None) -> None:
    """Save weights (a model's, or named tensors) to ``model.safetensors`` and ``config`` to
    ``config.json`` (plus ``extra_json`` files)."""
    directory = Path(directory)
    write_tensors(directory / MODEL_FILE, model if isinstance(model, dict) else model.state_dict())
    for name, data in (extra_json or {}).items():
        write_json(directory / name, data)
    write_json(directory / CONFIG_FILE, config)  # last: its presence marks a complete checkpoint


def one_line(error: BaseException) -> str:
    """An exception's message in one line: its first line, and the next one when the first only introduces it
    ("Error(s) in loading state_dict for X:"); a ``KeyError`` as the key that is missing."""
    if isinstance(error, KeyError) and error.args:
        return f"missing {error.args[0]!r}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]


def read_json(path: str | Path) -> Any:
    """A JSON file's data; ValueError naming the file and what is wrong with it, in one line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read JSON ({one_line(e)})") from None


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; ValueError naming the file when it cannot be read or when a tensor holds
    NaN or infinite values (weights like that make every caption fail, silently)."""
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise ValueError(f"{path}: cannot read tensors ({one_line(e)})") from None
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values (first: {bad[0]})")
    return tensors


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load ``tensors`` into ``model``; ValueError naming ``path``, in one line, when they do not fit it."""
    expected = model.state_dict()
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    resized = sorted(k for k in expected.keys() & tensors.keys() if expected[k].shape != tensors[k].shape)
    problems = [f"{what} {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
                for what, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape:", resized))
                if names]
    if problems:
        raise ValueError(f"{path}: the weights do not fit the model its config.json describes "
                         f"({'; '.join(problems)})")
    model.load_state_dict(tensors)


@contextmanager
def config_errors(path: str | Path) -> Iterator[None]:
    """Report what a malformed config raises in the block (a missing key, an unknown or ill-typed setting,
    a value out of range) as one line naming ``path``."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: {one_line(e)}") from None


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and config of a checkpoint folder; a one-line error naming the file if it is not one."""
    tensors, files = read_checkpoint(directory)
    return tensors, files[CONFIG_FILE]


def read_checkpoint(directory: str | Path, json_files: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], dict]:
    """A checkpoint folder's tensors, and its config and ``json_files`` (such as ``vocab.json``) by name; a
    one-line error naming the file that is missing or unreadable."""
    directory = Path(directory)
    for name in (MODEL_FILE, CONFIG_FILE, *json_files):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: not a checkpoint (missing {name})")
    tensors = read_tensors(directory / MODEL_FILE)
    files = {name: read_json(directory / name) for name in (CONFIG_FILE, *json_files)}
    if not isinstance(files[CONFIG_FILE], dict):
        raise ValueError(f"{directory / CONFIG_FILE}: expected a JSON object")
    return tensors, files


ENCODER_PREFIX = "encoder."  # fine-tuned encoder blocks, saved beside the decoder's weights


def split_encoder_weights(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A caption checkpoint's tensors as (decoder weights, fine-tuned encoder weights by backbone name)."""
    decoder = {k: v for k, v in tensors.items() if not k.startswith(ENCODER_PREFIX)}
    encoder = {k[len(ENCODER_PREFIX):]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    return decoder, encoder


# ---------------------------------------------------------------- training state (for --resume)


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a reference, collecting tensors by path."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, f"{prefix}.k{i}", tensors), _flatten(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    return obj


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, dict) and "__list__" in obj:
        items = [_unflatten(v, tensors) for v in obj["__list__"]]
        return tuple(items) if obj["tuple"] else items
    return obj


def save_state(directory: str | Path, state: dict[str, Any]) -> None:
    """Save a nested training state (optimizer, scheduler, RNG, counters) as safetensors + JSON."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "s", tensors)
    directory = Path(directory)
    write_tensors(directory / "state.safetensors", tensors)
    write_json(directory / "state.json", structure)


def load_state(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    return _unflatten(json.loads((directory / "state.json").read_text()), load_file(str(directory / "state.safetensors")))


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Fill a fresh folder, then swap it in for ``path``: readers see the old or the new, never half."""
    path = Path(path)
    new, old = path.with_name(path.name + ".new"), path.with_name(path.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    yield new
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


def existing_checkpoint(path: str | Path) -> Path | None:
    """``path`` if it holds a complete checkpoint, else the copy a killed swap left behind, else None."""
    for candidate in (Path(path), Path(str(path) + ".old")):
        if (candidate / CONFIG_FILE).exists():
            return candidate
    return None
