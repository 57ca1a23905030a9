"""Safe file reading and writing: atomic writes (a killed process leaves the old file or the new, never half), size-
and depth-bounded JSON and text reads, and the one-line error messages every face prints.

Nothing here imports torch, so the command line can use it before it needs a model.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


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


def atomic_write(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write JSON atomically (``indent`` None: on one line, for files read by programs only)."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(data, indent=indent)))


QUOTED_CHARS = 40  # how much of a value a one-line message quotes


def shorten(text: str) -> str:
    """The first :data:`QUOTED_CHARS` characters of ``text``: how much of a value (a name, a line, a JSON value) a
    one-line message quotes, so that a long one cannot flood it."""
    return text[:QUOTED_CHARS]


def one_line(error: BaseException) -> str:
    """An exception's message in one line: its first line, and the next one when the first only introduces it
    ("Error(s) in loading state_dict for X:"); a ``KeyError`` as the key that is missing."""
    if isinstance(error, KeyError) and error.args:
        return f"missing {error.args[0]!r}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]


MAX_FILE_BYTES = 1 << 30  # 1 GiB: the largest text or JSON file read (VQA v2's largest annotations are a third of it)


MAX_JSON_DEPTH = 64  # nesting levels of a JSON file: the project's own files need at most 16


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


@contextmanager
def config_errors(path: str | Path, section: str = "") -> Iterator[None]:
    """Report what a malformed config raises in the block (a missing key, an unknown or ill-typed setting,
    a value out of range) as one line naming ``path`` and, when given, the ``section`` of it."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: {section + ': ' if section else ''}{one_line(e)}") from None


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
