"""Checkpoints as safetensors + JSON: tensors and plain data only, so loading never unpickles code.

A checkpoint is a folder holding ``model.safetensors`` and ``config.json`` (plus whatever
JSON files the caller adds, such as ``vocab.json``). Every file is written to a temporary
name and renamed into place, so a run killed mid-save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine): a temporary file named after a dead one is an orphan."""
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_orphan(path: Path, pid: str) -> None:
    """Delete the temporary file ``path``, written by process ``pid``, if that process is gone: killed before it
    could clean up (SIGKILL, or SIGTERM, whose default action skips all clean-up). A live one's is left alone."""
    if pid.isdigit() and not process_alive(int(pid)):
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """A temporary file name beside ``path`` (whose folders are created) to write to; when the block
    completes it is renamed over ``path``, and when the block fails it is deleted, so ``path`` holds the
    old file or the new one, never a half-written one. The name, ``.NAME.PID.XXXXXXXX.tmp``, carries the
    writer's process id, so that the next write of ``path`` deletes those of writers killed outright. An
    OSError of the block (a full disk) names ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        remove_orphan(stale, stale.name[len(prefix):].partition(".")[0])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{prefix}{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are ordinary files
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is not None and e.strerror:
            raise
        raise OSError(e.errno, e.strerror or one_line(e), str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write JSON atomically (``indent`` None: on one line, for files read by programs only)."""
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(data, indent=indent)))


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
    _atomic_write(Path(path), save)


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


MAX_FILE_BYTES = 1 << 30  # 1 GiB: the largest text or JSON file read (VQA v2's largest annotations are a third of it)
MAX_JSON_DEPTH = 64  # nesting levels of a JSON file: the project's own files need at most 16
MAX_MAGNITUDE = 1e4  # |weight| of a trained caption or VQA model: the shipped ones stay under 6


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents; ValueError naming the file, in one line, when it is not a regular file (a
    named pipe would block), is over :data:`MAX_FILE_BYTES`, is not UTF-8 or cannot be read."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ValueError(f"{path}: {info.st_size / 2 ** 20:.0f} MiB, over the {MAX_FILE_BYTES >> 20} MiB limit")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or one_line(e)})") from None


def parse_json(text: str) -> Any:
    """JSON text's data, nested at most :data:`MAX_JSON_DEPTH` deep; ValueError (one line, without a file name,
    which the caller adds) when it is not JSON or nested deeper. ``json.JSONDecodeError`` for text that is not
    JSON, so that a caller can try another reading (JSON lines)."""
    try:
        data = json.loads(text)
    except RecursionError:  # Python's own limit, about 1,000 levels, is past ours
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    containers = [(data, 1)] if isinstance(data, (dict, list)) else []
    while containers:  # depth first, without recursion
        value, depth = containers.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        items = value.values() if isinstance(value, dict) else value
        containers.extend((v, depth + 1) for v in items if isinstance(v, (dict, list)))
    return data


def read_json(path: str | Path) -> Any:
    """A JSON file's data (see :func:`read_text` and :func:`parse_json` for its limits); ValueError naming the
    file and what is wrong with it, in one line."""
    text = read_text(path)
    try:
        return parse_json(text)
    except ValueError as e:  # JSONDecodeError, the depth limit, an integer of over 4,300 digits
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


def check_tensors(path: str | Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                  max_abs: float | None = MAX_MAGNITUDE, what: str = "the model its config.json describes") -> None:
    """ValueError naming ``path``, in one line, unless ``tensors`` fit ``expected`` (the state dict of ``what``, on
    the meta device or not): the same names and shapes, a floating dtype where it has one, finite, and (unless
    ``max_abs`` is None) no value past ``max_abs``. Integer weights would be cast and caption nonsense; huge
    ones overflow to silence."""
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    common = sorted(expected.keys() & tensors.keys())
    resized = [k for k in common if expected[k].shape != tensors[k].shape]
    problems = [f"{what} {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
                for what, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape:", resized))
                if names]
    if problems:
        raise ValueError(f"{path}: the weights do not fit {what} ({'; '.join(problems)})")
    for k in common:
        t = tensors[k]
        if expected[k].dtype.is_floating_point != t.dtype.is_floating_point:
            raise ValueError(f"{path}: {k} holds {str(t.dtype).removeprefix('torch.')} values, "
                             f"not {str(expected[k].dtype).removeprefix('torch.')}")
        if t.is_floating_point() and t.numel():
            if not torch.isfinite(t).all():
                raise ValueError(f"{path}: {k} holds NaN or infinite values")
            if max_abs is not None and float(t.abs().max()) > max_abs:
                raise ValueError(f"{path}: {k} holds values past ±{max_abs:g} (up to {float(t.abs().max()):.3g}), "
                                 "which no trained model has")


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load ``tensors`` into ``model``; ValueError naming ``path``, in one line, when they do not fit it
    (:func:`check_tensors`)."""
    check_tensors(path, tensors, model.state_dict())
    model.load_state_dict(tensors)


@contextmanager
def config_errors(path: str | Path, section: str = "") -> Iterator[None]:
    """Report what a malformed config raises in the block (a missing key, an unknown or ill-typed setting,
    a value out of range) as one line naming ``path`` and, when given, the ``section`` of it."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: {section + ': ' if section else ''}{one_line(e)}") from None


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
    return _unflatten(read_json(directory / "state.json"), load_file(str(directory / "state.safetensors")))


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Fill a fresh folder, then swap it in for ``path``: readers see the old or the new, never half. When filling
    it fails (a full disk), the fresh folder is deleted and ``path`` is left as it was."""
    path = Path(path)
    new, old = path.with_name(path.name + ".new"), path.with_name(path.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    try:
        yield new
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
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
