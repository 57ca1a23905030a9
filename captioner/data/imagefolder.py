"""Your own data: an ``imagefolder`` of captions or questions.

After Hugging Face's ``imagefolder``: a folder of images (in subfolders or not) and one metadata file beside
them, ``metadata.csv`` or ``metadata.jsonl``, a row per caption or per question, naming its image by
``file_name`` (relative to the folder). An optional ``split`` column puts each row in train, dev or test;
without one, a fixed fifth of the images is the dev split, so training can always validate.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence, TypeVar

from ..images import IMAGE_SUFFIXES
from ..io import read_csv_rows, read_jsonl_rows, shorten
from .captions import ImageCaptions
from .vqa import VQAExample, held_out_images

T = TypeVar("T")

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
SPLIT_NAMES = {"train": "train", "dev": "dev", "validation": "dev", "val": "dev", "test": "test"}  # HF's too
HELD_OUT = 0.2  # without a split column: the fraction of the images that is the dev split (split_by_image, seed 0)


def imagefolder_split(split: str, where: str = "") -> str:
    """Our name for a split (Hugging Face's ``validation`` is ``dev``); ValueError, after ``where``, for an
    unknown one."""
    if split.strip().lower() not in SPLIT_NAMES:
        raise ValueError(f"{where}split must be one of {', '.join(SPLIT_NAMES)}, not {shorten(split)!r}")
    return SPLIT_NAMES[split.strip().lower()]


def read_metadata(root: str | Path, csv_columns: Sequence[str]) -> tuple[Path, list[tuple[str, dict[str, Any]]]]:
    """An imagefolder's metadata file and its records (see :func:`read_csv_rows`, :func:`read_jsonl_rows`); a CSV
    must have ``csv_columns``. FileNotFoundError or ValueError (one line) when there is no single such file."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    found = [root / name for name in METADATA_FILES if (root / name).is_file()]
    if len(found) != 1:
        problem = "both" if found else "neither"
        raise (ValueError if found else FileNotFoundError)(
            f"{root}: {problem} metadata.csv {'and' if found else 'nor'} metadata.jsonl (give exactly one; see "
            "datasets/README.md)"
        )
    path = found[0]
    return path, read_csv_rows(path, csv_columns)[1] if path.suffix == ".csv" else read_jsonl_rows(path)


def _text(path: Path, where: str, record: dict[str, Any], column: str) -> str:
    """The non-empty string in ``column`` of a record."""
    value = record.get(column)
    if not isinstance(value, str) or not value.strip():
        shown = "missing" if value is None else "empty" if isinstance(value, str) else "not a string"
        raise ValueError(f"{path}: {where}: {column} is {shown}")
    return value.strip()


def _texts(path: Path, where: str, record: dict[str, Any], one: str, many: str) -> list[str]:
    """The strings of a record's ``one`` column (a string) or ``many`` (a non-empty list of strings; JSON lines)."""
    if (one in record) == (many in record):
        raise ValueError(f"{path}: {where}: give {one} or {many}" + (", not both" if one in record else ""))
    if one in record:
        return [_text(path, where, record, one)]
    values = record[many]
    if not isinstance(values, list) or not values:
        raise ValueError(f"{path}: {where}: {many} must be a non-empty list of strings")
    return [_text(path, f"{where}: {many} item {i + 1}", {one: v}, one) for i, v in enumerate(values)]


def _image_file(root: Path, path: Path, where: str, record: dict[str, Any]) -> tuple[str, Path]:
    """A record's image: its ``file_name`` (relative, inside ``root``, an image) and the file, which must exist."""
    name = _text(path, where, record, "file_name")
    relative = PurePosixPath(name.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{path}: {where}: file_name {shorten(name)!r} is outside {root} (give it relative to there)")
    if relative.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(
            f"{path}: {where}: file_name {shorten(name)!r} is not an image file name "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if not (root / relative).is_file():
        raise FileNotFoundError(f"{path}: {where}: no image {shorten(name)!r} in {root}")
    return relative.as_posix(), root / relative


def _imagefolder_rows(
    root: str | Path, csv_columns: Sequence[str], parse: Callable[[Path, str, dict], T]
) -> tuple[Path, list[tuple[str, str, Path, str | None, T]]]:
    """An imagefolder's metadata file and its records, every one checked, each as (where, image name, image file,
    split, ``parse(metadata file, where, record)``); the split is None for all when there is no split column."""
    root = Path(root)
    path, records = read_metadata(root, ("file_name", *csv_columns))
    if not records:
        raise ValueError(f"{path}: no rows")
    with_split = any("split" in record for _, record in records)
    rows, first_split = [], {}  # the split each image was first put in, and where
    for where, record in records:
        name, image = _image_file(root, path, where, record)
        split = imagefolder_split(_text(path, where, record, "split"), f"{path}: {where}: ") if with_split else None
        seen = first_split.setdefault(name, (split, where))
        if seen[0] != split:  # scores on dev would be measured on a training image
            raise ValueError(
                f"{path}: {where}: {shorten(name)!r} is in the {split} split, but {seen[1]} put it in "
                f"{seen[0]}; an image belongs to one split"
            )
        rows.append((where, name, image, split, parse(path, where, record)))
    return path, rows


def imagefolder_splits(root: str | Path) -> set[str]:
    """The splits an imagefolder has: those its split column names, else train and dev (held out)."""
    rows = _imagefolder_rows(root, (), lambda *_: None)[1]
    return {"train", "dev"} if rows[0][3] is None else {row[3] for row in rows}


def _split_rows(
    root: str | Path, split: str, csv_columns: Sequence[str], parse: Callable[[Path, str, dict], T]
) -> list[tuple[str, str, Path, T]]:
    """The records of ``split`` in an imagefolder (see :func:`_imagefolder_rows`), each as (where, image name,
    image file, parsed record): those its split column puts there, else the train or dev side of a fixed split by
    image (:func:`held_out_images` of :data:`HELD_OUT`, seed 0, as :func:`split_by_image` splits)."""
    wanted = imagefolder_split(split)
    path, rows = _imagefolder_rows(root, csv_columns, parse)
    with_split = rows[0][3] is not None
    if with_split:
        chosen = [(where, name, image, parsed) for where, name, image, s, parsed in rows if s == wanted]
        if not chosen:
            raise ValueError(f"{path}: no {wanted} rows in its split column")
        return chosen
    if wanted == "test":
        raise ValueError(f"{path}: no split column, so no test split (only train, and dev: a fifth of the images)")
    images = {name for _, name, _, _, _ in rows}
    held = held_out_images(images, HELD_OUT)
    if not 0 < len(held) < len(images):
        raise ValueError(
            f"{path}: {len(images)} image(s) are too few to hold a fifth of them out for dev; add a split column"
        )
    return [
        (where, name, image, parsed) for where, name, image, _, parsed in rows if (name in held) == (wanted == "dev")
    ]


def load_imagefolder_captions(root: str | Path, split: str = "train") -> list[ImageCaptions]:
    """An imagefolder of captions: ``file_name`` and ``caption`` (a row per caption; JSON lines may give a
    ``captions`` list instead), an image's captions gathered from all its rows. Image ids are the file names."""
    rows = _split_rows(
        root, split, ("caption",), lambda path, where, record: _texts(path, where, record, "caption", "captions")
    )
    by_image: dict[str, ImageCaptions] = {}
    for _, name, image, captions in rows:
        by_image.setdefault(name, ImageCaptions(name, image)).captions.extend(captions)
    return list(by_image.values())


def load_imagefolder_questions(root: str | Path, split: str = "train") -> list[VQAExample]:
    """An imagefolder of questions: ``file_name``, ``question`` and ``answer`` (a row per question; JSON lines may
    give an ``answers`` list instead: three or more human answers are scored by the soft VQA accuracy)."""
    rows = _split_rows(
        root,
        split,
        ("question", "answer"),
        lambda path, where, record: (
            _text(path, where, record, "question"),
            _texts(path, where, record, "answer", "answers"),
        ),
    )
    return [VQAExample(where, question, name, image, answers) for where, name, image, (question, answers) in rows]
