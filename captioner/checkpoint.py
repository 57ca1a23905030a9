"""Checkpoints as safetensors + JSON: tensors and plain data only, so loading never unpickles code.

A checkpoint is a folder holding ``model.safetensors`` and ``config.json`` (plus whatever
JSON files the caller adds, such as ``vocab.json``). Every file is written to a temporary
name and renamed into place, so a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .io import atomic_write, one_line, read_json, write_json

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write a safetensors file atomically (tensors are made contiguous and unshared first). safetensors reports a
    failed write (a full disk) as its own error; it is an OSError naming ``path`` here, as for every other file."""
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}

    def save(tmp: str) -> None:
        try:
            save_file(clean, tmp)
        except SafetensorError as e:
            found = re.search(r"os error (\d+)", str(e))  # its message carries the OS's error number, if any
            code = int(found.group(1)) if found else None
            raise OSError(code, os.strerror(code) if code else one_line(e), str(path)) from None

    atomic_write(Path(path), save)


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module | dict[str, torch.Tensor],
    config: dict[str, Any],
    extra_json: dict[str, Any] | None = None,
) -> None:
    """Save weights (a model's, or named tensors) to ``model.safetensors`` and ``config`` to
    ``config.json`` (plus ``extra_json`` files)."""
    directory = Path(directory)
    write_tensors(directory / MODEL_FILE, model if isinstance(model, dict) else model.state_dict())
    for name, data in (extra_json or {}).items():
        write_json(directory / name, data)
    write_json(directory / CONFIG_FILE, config)  # last: its presence marks a complete checkpoint


MAX_MAGNITUDE = 1e4  # |weight| of a trained caption or VQA model: the shipped ones stay under 6


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """The name and shape of each tensor of a safetensors file, from its header alone: no tensor is read, so a
    file that holds more than its model (a huge extra tensor) can be refused before it costs any memory."""
    try:
        with safe_open(str(path), "pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (OSError, SafetensorError) as e:
        raise ValueError(f"{path}: cannot read tensors ({one_line(e)})") from None


def read_tensors(
    path: str | Path,
    expected: dict[str, torch.Tensor] | None = None,
    extra: str = "\0",
    what: str = "the model its config.json describes",
) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; ValueError naming the file when it cannot be read or when a tensor holds
    NaN or infinite values (weights like that make every caption fail, silently). With ``expected`` (a state
    dict, on the meta device or not), the header's names and shapes must fit it before anything is read; names
    starting with ``extra`` are let through, for the caller to check."""
    if expected is not None:
        shapes = {k: s for k, s in read_shapes(path).items() if not k.startswith(extra)}
        check_shapes(path, shapes, {k: tuple(v.shape) for k, v in expected.items()}, what)
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise ValueError(f"{path}: cannot read tensors ({one_line(e)})") from None
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values (first: {bad[0]})")
    return tensors


def check_tensors(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    max_abs: float | None = MAX_MAGNITUDE,
    what: str = "the model its config.json describes",
) -> None:
    """ValueError naming ``path``, in one line, unless ``tensors`` fit ``expected`` (the state dict of ``what``, on
    the meta device or not): the same names and shapes, a floating dtype where it has one, finite, and (unless
    ``max_abs`` is None) no value past ``max_abs``. Integer weights would be cast and caption nonsense; huge
    ones overflow to silence."""
    check_shapes(
        path, {k: tuple(v.shape) for k, v in tensors.items()}, {k: tuple(v.shape) for k, v in expected.items()}, what
    )
    for k in sorted(expected.keys() & tensors.keys()):
        t = tensors[k]
        if expected[k].dtype.is_floating_point != t.dtype.is_floating_point:
            raise ValueError(
                f"{path}: {k} holds {str(t.dtype).removeprefix('torch.')} values, "
                f"not {str(expected[k].dtype).removeprefix('torch.')}"
            )
    check_magnitude(path, {k: tensors[k] for k in sorted(expected.keys() & tensors.keys())}, max_abs)


def check_shapes(
    path: str | Path, shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], what: str
) -> None:
    """ValueError naming ``path``, in one line, unless ``shapes`` has the names and shapes of ``expected``."""
    missing = sorted(expected.keys() - shapes.keys())
    unexpected = sorted(shapes.keys() - expected.keys())
    resized = [k for k in sorted(expected.keys() & shapes.keys()) if expected[k] != shapes[k]]
    problems = [
        f"{kind} {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        for kind, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape:", resized))
        if names
    ]
    if problems:
        raise ValueError(f"{path}: the weights do not fit {what} ({'; '.join(problems)})")


def check_magnitude(path: str | Path, tensors: dict[str, torch.Tensor], max_abs: float | None = MAX_MAGNITUDE) -> None:
    """ValueError naming ``path``, in one line, when a floating tensor holds NaN, infinite values or (unless
    ``max_abs`` is None) values past ``max_abs``, which no trained model has: they overflow to silence."""
    for k, t in tensors.items():
        if t.is_floating_point() and t.numel():
            if not torch.isfinite(t).all():
                raise ValueError(f"{path}: {k} holds NaN or infinite values")
            if max_abs is not None and float(t.abs().max()) > max_abs:
                raise ValueError(
                    f"{path}: {k} holds values past ±{max_abs:g} (up to {float(t.abs().max()):.3g}), "
                    "which no trained model has"
                )


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load ``tensors`` into ``model``; ValueError naming ``path``, in one line, when they do not fit it
    (:func:`check_tensors`)."""
    check_tensors(path, tensors, model.state_dict())
    model.load_state_dict(tensors)


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and config of a checkpoint folder; a one-line error naming the file if it is not one."""
    tensors, files = read_checkpoint(directory)
    return tensors, files[CONFIG_FILE]


def read_checkpoint(directory: str | Path, json_files: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], dict]:
    """A checkpoint folder's tensors, and its config and ``json_files`` (such as ``vocab.json``) by name; a
    one-line error naming the file that is missing or unreadable."""
    files = read_checkpoint_files(directory, json_files)
    return read_tensors(Path(directory) / MODEL_FILE), files


def read_checkpoint_files(directory: str | Path, json_files: tuple[str, ...] = ()) -> dict:
    """A checkpoint folder's config and ``json_files`` by name, its tensors left unread (see
    :func:`read_tensors`); a one-line error naming the file that is missing or unreadable."""
    directory = Path(directory)
    for name in (MODEL_FILE, CONFIG_FILE, *json_files):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: not a checkpoint (missing {name})")
    files = {name: read_json(directory / name) for name in (CONFIG_FILE, *json_files)}
    if not isinstance(files[CONFIG_FILE], dict):
        raise ValueError(f"{directory / CONFIG_FILE}: expected a JSON object")
    return files


ENCODER_PREFIX = "encoder."  # fine-tuned encoder blocks, saved beside the decoder's weights


def split_encoder_weights(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A caption checkpoint's tensors as (decoder weights, fine-tuned encoder weights by backbone name)."""
    decoder = {k: v for k, v in tensors.items() if not k.startswith(ENCODER_PREFIX)}
    encoder = {k[len(ENCODER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    return decoder, encoder


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a reference, collecting tensors by path."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {
            "__dict__": [
                [_flatten(k, f"{prefix}.k{i}", tensors), _flatten(v, f"{prefix}.{i}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, (list, tuple)):
        return {
            "__list__": [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)],
            "tuple": isinstance(obj, tuple),
        }
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
    return _unflatten(read_json(directory / "state.json"), load_file(str(directory / "state.safetensors")))


def existing_checkpoint(path: str | Path) -> Path | None:
    """``path`` if it holds a complete checkpoint, else the copy a killed swap left behind, else None."""
    for candidate in (Path(path), Path(str(path) + ".old")):
        if (candidate / CONFIG_FILE).exists():
            return candidate
    return None
