"""Reading the text a character model trains on or is scored on: files or folders of UTF-8 text.

The UTF-8 policy is strict: a file is read as UTF-8 (a leading byte-order mark dropped, line ends kept as they
are); a file that is not valid UTF-8, or holds a NUL byte (a binary file), is an error naming the file and the
byte, never silently repaired. Inside a folder (searched recursively, hidden files skipped, in sorted order) such
files are skipped with a note instead, so that a source tree with an odd file still reads; a folder left with no
text is an error. Every error is one line (ValueError or FileNotFoundError).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..io import MAX_FILE_BYTES, one_line

SKIPPED_NAMES = {"COPYING", "LICENSE", "LICENCE"}  # licence texts beside a corpus are not part of it


@dataclass
class Document:
    """One file's text, and where it came from."""

    path: Path
    text: str


def decode_text(path: Path, data: bytes) -> str:
    """``data`` as UTF-8 text; ValueError (one line) for empty, binary or invalid UTF-8 data."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise ValueError(f"{path}: empty (no text to read)")
    nul = data.find(b"\0")
    if nul >= 0:
        raise ValueError(f"{path}: a binary file (a NUL byte at byte {nul}), not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not UTF-8 (byte {e.start} is 0x{data[e.start]:02x}); the text must be UTF-8 "
            "(convert it, e.g. with iconv)"
        ) from None


def read_file(path: Path) -> str:
    """A UTF-8 text file's contents (see the module's policy); one-line errors."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ValueError(f"{path}: {info.st_size >> 20} MiB, over the {MAX_FILE_BYTES >> 20} MiB limit")
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or one_line(e)})") from None
    return decode_text(path, data)


def folder_files(folder: Path) -> list[Path]:
    """The files under ``folder``, recursively, sorted, without hidden ones or licence texts."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.name not in SKIPPED_NAMES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_documents(paths: Sequence[str | Path], note: Callable[[str], None] = print) -> list[Document]:
    """Every file of ``paths`` (files or folders) as a :class:`Document`, in the order given (a folder's files
    sorted). A file given by name must be text; a folder's files that are not are skipped, each reported with
    ``note``. FileNotFoundError or ValueError (one line) when a path is missing or a folder holds no text."""
    if not paths:
        raise ValueError("no text: give at least one file or folder of UTF-8 text")
    documents: list[Document] = []
    for given in map(Path, paths):
        if not given.exists():
            raise FileNotFoundError(f"{given}: no such file or folder")
        if not given.is_dir():
            documents.append(Document(given, read_file(given)))
            continue
        found = 0
        for path in folder_files(given):
            try:
                documents.append(Document(path, read_file(path)))
                found += 1
            except ValueError as e:
                note(f"skipped {e}")
        if not found:
            raise ValueError(f"{given}: a folder with no UTF-8 text files")
    return documents


def split_documents(documents: Sequence[Document], val_fraction: float) -> tuple[str, str]:
    """The text as (train, val): val is the last ``val_fraction`` of the characters, by position (nanoGPT's
    split of tiny-shakespeare). With several files the cut moves to the nearest file boundary at or after that
    position, so validation holds whole files the model never saw, unless that would leave it empty."""
    text = "".join(d.text for d in documents)
    cut = round(len(text) * (1 - val_fraction))
    if len(documents) > 1 and val_fraction > 0:
        starts, position = [], 0
        for d in documents:
            starts.append(position)
            position += len(d.text)
        later = [s for s in starts if s >= cut]
        if later and later[0] < len(text):
            cut = later[0]
    return text[:cut], text[cut:]
