"""Safe file reading and writing: atomic writes (a killed process leaves the old file or the new, never half), size-
and depth-bounded JSON and text reads, the one CSV reader (and JSON lines), and the one-line error messages every
face prints.

Nothing here imports torch, so the command line can use it before it needs a model.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import stat
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence


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
        remove_orphan(stale, stale.name[len(prefix) :].partition(".")[0])
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


class MissingFileError(FileNotFoundError, ValueError):
    """A file that is not there, in one line: a ValueError like every other unreadable input, and a
    FileNotFoundError for a caller to whom a missing file means a missing part (a dataset without a test split)."""


def _unreadable(path: Path, e: OSError) -> ValueError:
    message = f"{path}: cannot read it ({e.strerror or one_line(e)})"
    return MissingFileError(message) if isinstance(e, FileNotFoundError) else ValueError(message)


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents; ValueError naming the file, in one line, when it is not a regular file (a
    named pipe would block), is over :data:`MAX_FILE_BYTES`, is not UTF-8 or cannot be read."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ValueError(f"{path}: {info.st_size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES >> 20} MiB limit")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as e:
        raise _unreadable(path, e) from None


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


def required_path(path: Path, hint: str = "") -> Path:
    """``path``, or FileNotFoundError naming it (and ``hint``) when it does not exist."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found{hint}")
    return path


# ---------------------------------------------------------------- tables: CSV and JSON lines


def _csv_header(path: Path, header: list[str], required: Sequence[str]) -> list[str]:
    """A CSV's column names, outer spaces stripped; ValueError for a name given twice or a ``required`` one
    missing."""
    header = [name.strip() for name in header]
    repeated = [name for name, count in Counter(header).items() if count > 1]
    if repeated:
        raise ValueError(
            f"{path}: the header names column(s) {', '.join(repr(shorten(c)) for c in repeated)} more "
            "than once; give each column its own name"
        )
    missing = [name for name in required if name not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(required)})")
    return header


def read_csv_rows(path: str | Path, required: Sequence[str] = ()) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    """A CSV with a header: its column names and its data rows, each as (``"row N"``, its fields by column), N as
    a spreadsheet numbers rows (the header is row 1). UTF-8, with or without a byte-order mark, lines ending in LF
    or CRLF; rows with no text are skipped. The one rule for a ragged row (more or fewer fields than the header):
    it is refused, as every other problem is, with a one-line ValueError naming the file and the row: an
    unreadable file, a missing ``required`` column or a column named twice."""
    rows, n = [], 0  # n: the last row read
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM is not part of the first name
            reader = csv.reader(f)
            header, n = _csv_header(Path(path), next(reader, []), required), 1
            for n, fields in enumerate(reader, 2):
                if not any(value.strip() for value in fields):
                    continue
                if len(fields) != len(header):
                    raise ValueError(f"{path}: row {n}: {len(fields)} fields, but the header has {len(header)}")
                rows.append((f"row {n}", dict(zip(header, fields))))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({one_line(e)})") from None
    except csv.Error as e:
        raise ValueError(f"{path}: row {n + 1}: not CSV ({one_line(e)})") from None
    except OSError as e:
        raise _unreadable(path, e) from None
    return header, rows


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict, refusing a key given twice (``json`` would keep the last silently)."""
    record = dict(pairs)
    if len(record) < len(pairs):
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise ValueError(f"key {shorten(twice)!r} appears more than once")
    return record


def read_jsonl_rows(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """The records of a JSON-lines file, each as (``"line N"``, the object); blank lines are skipped. ValueError
    (one line, naming the file and the line) for a line that is not a JSON object or names a key twice."""
    rows = []
    try:
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line, object_pairs_hook=_no_duplicate_keys)
                except (ValueError, RecursionError) as e:
                    raise ValueError(f"{path}: line {n}: not a JSON object ({one_line(e)})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{path}: line {n}: expected a JSON object, not {type(record).__name__}")
                rows.append((f"line {n}", record))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({one_line(e)})") from None
    return rows


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
