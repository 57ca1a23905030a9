"""Dataset formats: Flickr8k, COCO captions, Karpathy splits, the VQA sets (DAQUAR, COCO questions, VQA v2,
easy-vqa), and your own photos as an ``imagefolder`` (captions or questions). Image decoding is in
:mod:`captioner.images`.

Every caption loader returns the same thing, a list of :class:`ImageCaptions`, so
training, evaluation and the CLI never care which dataset they came from. A malformed file is a
one-line ValueError naming the file and the row (or line).
"""
from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np

from ..images import IMAGE_SUFFIXES, image_id_from_filename
from ..io import one_line, parse_json, read_json, read_text

T = TypeVar("T")


@dataclass
class ImageCaptions:
    """One image and its reference captions (empty when captions are unknown)."""

    image_id: int | str
    path: Path
    captions: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- caption datasets

CAPTION_DATASETS = ("flickr8k", "coco", "karpathy", "imagefolder")


def read_flickr8k_tokens(token_file: str | Path) -> dict[str, list[str]]:
    """Flickr8k ``IMAGE#N<TAB>caption`` lines as ``{image file name: [captions]}``; ValueError naming the file
    (and the line) when it is not UTF-8, a line lacks its TAB, or it holds no captions at all."""
    try:
        text = Path(token_file).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{token_file}: not UTF-8 text (expected IMAGE#N<TAB>caption lines)") from None
    refs: dict[str, list[str]] = defaultdict(list)
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise ValueError(f"{token_file}: line {n}: expected IMAGE#N<TAB>caption, not {line[:40]!r}")
        key, caption = line.split("\t", 1)
        refs[key.split("#")[0]].append(caption.strip())
    if not refs:
        raise ValueError(f"{token_file}: no captions (expected IMAGE#N<TAB>caption lines)")
    return dict(refs)


def _required(path: Path, hint: str = "") -> Path:
    """``path``, or FileNotFoundError naming it (and ``hint``) when it does not exist."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found{hint}")
    return path


def read_split_list(path: str | Path) -> list[str]:
    """The image names of a split list such as Flickr8k's ``Flickr_8k.devImages.txt``: one a line, blanks skipped."""
    return [n.strip() for n in read_text(path).splitlines() if n.strip()]


def load_flickr8k(root: str | Path, split: str = "train") -> list[ImageCaptions]:
    """Flickr8k in its official layout: ``images/``, ``Flickr8k.token.txt``, ``Flickr_8k.<split>Images.txt``."""
    root = Path(root)
    split_file = _required(root / f"Flickr_8k.{split}Images.txt", " (splits: train, dev, test)")
    refs = read_flickr8k_tokens(root / "Flickr8k.token.txt")
    return [ImageCaptions(n, root / "images" / n, refs.get(n, [])) for n in read_split_list(split_file)]


def load_coco(annotations: str | Path, image_dir: str | Path) -> list[ImageCaptions]:
    """COCO captions (``captions_*.json``) read through pycocotools."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco = COCO()  # given the data, as read_json reads it (size and depth limits)
        coco.dataset = read_json(annotations)
        coco.createIndex()
    out = []
    for img_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(img_id)[0]
        caps = [a["caption"].strip() for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))]
        out.append(ImageCaptions(int(img_id), Path(image_dir) / info["file_name"], caps))
    return out


def load_karpathy(dataset_json: str | Path, image_root: str | Path, split: str = "train") -> list[ImageCaptions]:
    """Karpathy-split ``dataset_{coco,flickr8k,flickr30k}.json``; ``train`` includes ``restval``."""
    data = read_json(dataset_json)
    wanted = {"train", "restval"} if split == "train" else {split}
    out = []
    for img in data["images"]:
        if img["split"] not in wanted:
            continue
        path = Path(image_root) / img.get("filepath", "") / img["filename"]
        image_id = int(img["cocoid"]) if "cocoid" in img else img["filename"]
        out.append(ImageCaptions(image_id, path, [s["raw"].strip() for s in img["sentences"]]))
    return out


def load_caption_dataset(name: str, root: str | Path | None, split: str,
                         annotations: str | Path | None = None) -> list[ImageCaptions]:
    """Pick a loader by dataset name: ``flickr8k``, ``coco``, ``karpathy`` or ``imagefolder``."""
    if name not in CAPTION_DATASETS:
        raise ValueError(f"unknown dataset {name[:40]!r} (choose {', '.join(CAPTION_DATASETS)})")
    if root is None:
        raise ValueError(f"{name} needs a dataset folder ({name}:FOLDER)")
    if name == "imagefolder":
        return load_imagefolder_captions(root, split)
    if name == "flickr8k":
        return load_flickr8k(root, split)
    if name == "coco":
        ann = annotations or Path(root) / "annotations" / f"captions_{split}.json"
        return load_coco(ann, Path(root) / split)
    if name == "karpathy":
        if annotations is None:
            raise ValueError("--annotations must name the dataset_*.json file for karpathy splits")
        return load_karpathy(annotations, root, split)


# ---------------------------------------------------------------- mixes of datasets

MAX_WEIGHT = 100  # the largest dataset weight of a mix


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a training mix, written ``NAME:ROOT[:WEIGHT]`` (``easy-vqa`` needs no root).

    ``weight`` scales how often its examples are drawn in an epoch: 2 shows each twice, 0.5 a random half. It is
    at most :data:`MAX_WEIGHT`: an epoch holds ``weight`` copies of the dataset's rows.
    """

    name: str
    root: str | None = None
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "DatasetSpec":
        name, _, rest = text.strip().partition(":")
        root, weight = rest or None, 1.0
        head, _, tail = rest.rpartition(":")
        if head:
            try:
                root, weight = head, float(tail)
            except ValueError:  # a colon inside the path, not a weight
                pass
        if not name or not (0 < weight <= MAX_WEIGHT):
            raise ValueError(f"dataset {text[:60]!r}: expected NAME:ROOT or NAME:ROOT:WEIGHT with a weight above 0 "
                             f"and at most {MAX_WEIGHT}")
        return cls(name, root, weight)

    def __str__(self) -> str:
        return ":".join([self.name, *([self.root] if self.root else []), *([f"{self.weight:g}"] if self.weight != 1 else [])])


# ---------------------------------------------------------------- tables: CSV and JSON lines


def read_csv_rows(path: Path, required: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """The data rows of a CSV with a header (UTF-8, with or without a BOM), each as (``"row N"``, its fields by
    column), N as a spreadsheet numbers rows (the header is row 1); blank rows are skipped. ValueError (one line,
    naming the file, and the row when there is one) for an unreadable file, a missing ``required`` column or a
    column named twice, and a row with more or fewer fields than the header."""
    rows, n = [], 0  # n: the last row read
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM is not part of the first name
            reader = csv.reader(f)
            header, n = [name.strip() for name in next(reader, [])], 1
            twice = [name for name, count in Counter(header).items() if count > 1]
            if twice:
                raise ValueError(f"{path}: column {twice[0][:40]!r} appears more than once")
            missing = [name for name in required if name not in header]
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(required)})")
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
    return rows


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict, refusing a key given twice (``json`` would keep the last silently)."""
    record = dict(pairs)
    if len(record) < len(pairs):
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise ValueError(f"key {twice[:40]!r} appears more than once")
    return record


def read_jsonl_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
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


# ---------------------------------------------------------------- VQA datasets
#
# Every VQA loader returns a list of :class:`VQAExample`, so training, the baselines and the
# CLI never care which dataset a question came from. A question with three or more human answers
# (VQA v2, most COCO questions) is scored by the soft VQA accuracy, one with fewer (DAQUAR,
# easy-vqa, COCO-QA, POPE) by exact match: see ``captioner.vqa_metrics.question_metric``.

VQA_DATASETS = ("daquar", "coco", "vqa2", "easy-vqa", "generated", "imagefolder")
TRAIN_ONLY = ("generated",)  # question sets only trained on: never validated, so they never pick best/


@dataclass
class VQAExample:
    """One question about one image, with its human answers (empty when unknown)."""

    question_id: int | str
    question: str
    image_id: int | str
    path: Path
    answers: list[str] = field(default_factory=list)
    answer_type: str | None = None


def daquar_answer(answer: str) -> str:
    """DAQUAR's list answers (``"table, chair"``) as one class: items sorted, joined by ``", "``.

    A list names a set of objects, so its order carries no meaning; sorting merges
    ``"chair, table"`` with ``"table, chair"`` and makes exact match order-blind.
    """
    return ", ".join(sorted(item.strip().lower() for item in answer.split(",") if item.strip()))


def _images_by_stem(image_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def load_daquar(root: str | Path, split: str = "train") -> list[VQAExample]:
    """DAQUAR as ``qa_<split>.csv`` (question, answer, image_id) beside ``images/<image_id>.jpg``."""
    root = Path(root)
    qa_file = _required(root / f"qa_{split}.csv")
    images = _images_by_stem(_required(root / "images"))
    out = []
    for i, (where, row) in enumerate(read_csv_rows(qa_file, ("question", "answer", "image_id"))):
        image_id = row["image_id"].strip()
        if image_id not in images:
            raise FileNotFoundError(f"{qa_file}: {where}: no image {image_id[:40]!r} in {root / 'images'}")
        out.append(VQAExample(i, row["question"].strip(), image_id, images[image_id], [daquar_answer(row["answer"])]))
    return out


def load_vqa_v2(questions: str | Path, annotations: str | Path | None, image_dir: str | Path) -> list[VQAExample]:
    """The official VQA v2 files: questions JSON, annotations JSON (ten answers each) and a COCO image folder.

    Images are matched by COCO id, so both ``COCO_train2014_000000123456.jpg`` and
    ``000000123456.jpg`` names work. ``annotations=None`` loads questions without answers (test-dev).
    """
    image_dir = Path(image_dir)
    images = {image_id_from_filename(p): p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    anns = {}
    if annotations is not None:
        anns = {a["question_id"]: a for a in read_json(annotations)["annotations"]}
    out = []
    for q in read_json(questions)["questions"]:
        image_id = int(q["image_id"])
        if image_id not in images:
            raise FileNotFoundError(f"{questions}: question {q['question_id']}: no image {image_id} in {image_dir}")
        ann = anns.get(q["question_id"], {})
        out.append(VQAExample(q["question_id"], q["question"].strip(), image_id, images[image_id],
                              [a["answer"] for a in ann.get("answers", [])], ann.get("answer_type")))
    return out


def load_coco_questions(root: str | Path, split: str = "train") -> list[VQAExample]:
    """Questions as ``qa_<split>.jsonl``: on COCO images beside it in ``<split>/<12-digit id>.jpg``, or on any
    image a record names by ``file_name`` (relative to ``root``, or absolute), as generated questions do.

    Each line is ``{"image_id", "question", "answers": [every human answer], "source"}``, with ``file_name`` and
    ``kind`` optional. The question's type is its ``kind`` (generated questions: object, number, color, location,
    yes/no), else its ``source`` (vqa_v2, okvqa, cocoqa, ...), for per-type reports.
    """
    root = Path(root)
    qa_file = _required(root / f"qa_{split}.jsonl")
    images: dict[int | str, Path] | None = None  # the <split>/ folder, read when a record needs it
    out = []
    with open(qa_file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = parse_json(line)
                question, answers = str(row["question"]).strip(), [str(a) for a in row["answers"]]
                image_id = row["image_id"] if "file_name" in row else int(row["image_id"])
                if not isinstance(image_id, (int, str)):
                    raise TypeError(f"image_id must be a number or a string, not {image_id!r}")
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{qa_file}: line {i + 1}: not a question record ({e})") from None
            if "file_name" in row:
                path = root / str(row["file_name"])
                if not path.is_file():
                    raise FileNotFoundError(f"{qa_file}: line {i + 1}: no image {path}")
            else:
                if images is None:
                    if not (root / split).is_dir():
                        raise FileNotFoundError(f"{root / split}: image folder not found")
                    images = {image_id_from_filename(p): p for p in sorted((root / split).iterdir())
                              if p.suffix.lower() in IMAGE_SUFFIXES}
                if image_id not in images:
                    raise FileNotFoundError(f"{qa_file}: line {i + 1}: no image {image_id} in {root / split}")
                path = images[image_id]
            out.append(VQAExample(f"{split}-{i}", question, image_id, path, answers, row.get("kind") or row.get("source")))
    return out


def load_easy_vqa(split: str = "train") -> list[VQAExample]:
    """The synthetic easy-vqa set (``pip install easy-vqa``): coloured shapes, 13 answers."""
    import easy_vqa

    if split not in ("train", "test"):
        raise ValueError(f"easy-vqa has splits train and test, not {split!r}")
    texts, answers, image_ids = getattr(easy_vqa, f"get_{split}_questions")()
    paths = getattr(easy_vqa, f"get_{split}_image_paths")()
    return [VQAExample(i, q, image_id, Path(paths[image_id]), [a])
            for i, (q, a, image_id) in enumerate(zip(texts, answers, image_ids))]


def vqa_split_exists(name: str, root: str | Path | None, split: str) -> bool:
    """Whether dataset ``name`` has questions for ``split`` (DAQUAR here ships only ``train``)."""
    if name == "easy-vqa":
        return split in ("train", "test")
    if name == "imagefolder":
        return root is not None and imagefolder_split(split) in imagefolder_splits(root)
    files = {"daquar": f"qa_{split}.csv", "coco": f"qa_{split}.jsonl",
             "vqa2": f"v2_OpenEnded_mscoco_{split}2014_questions.json"}
    return root is not None and name in files and (Path(root) / files[name]).exists()


def load_vqa_dataset(name: str, root: str | Path | None, split: str, questions: str | Path | None = None,
                     annotations: str | Path | None = None) -> list[VQAExample]:
    """Pick a VQA loader by name: ``daquar``, ``coco``, ``vqa2``, ``easy-vqa`` (which needs no ``root``) or
    ``generated`` (``captioner questions``: ``qa_train.jsonl``, read as ``coco``'s) or ``imagefolder``."""
    if name == "easy-vqa":
        return load_easy_vqa(split)
    if root is None:
        raise ValueError(f"{name} needs a dataset folder ({name}:FOLDER)")
    if name == "imagefolder":
        return load_imagefolder_questions(root, split)
    if name == "daquar":
        return load_daquar(root, split)
    if name in ("coco", "generated"):
        return load_coco_questions(root, split)
    if name == "vqa2":
        root = Path(root)
        questions = questions or root / f"v2_OpenEnded_mscoco_{split}2014_questions.json"
        annotations = annotations or root / f"v2_mscoco_{split}2014_annotations.json"
        return load_vqa_v2(questions, annotations, root / f"{split}2014")
    raise ValueError(f"unknown VQA dataset {name[:40]!r} (choose {', '.join(VQA_DATASETS)})")


def held_out_images(image_ids: Iterable[int | str], val_fraction: float, seed: int = 0) -> set[str]:
    """A random ``val_fraction`` of the distinct ``image_ids`` (as strings), the same for the same ids and seed."""
    images = sorted({str(i) for i in image_ids})
    order = np.random.default_rng(seed).permutation(len(images))
    return {images[i] for i in order[: round(len(images) * val_fraction)]}


def split_by_image(examples: list[VQAExample], val_fraction: float,
                   seed: int = 0) -> tuple[list[VQAExample], list[VQAExample]]:
    """Hold out a random ``val_fraction`` of the images with all their questions.

    Splitting by question would put the same image in both halves and let a model score
    by remembering images, so whole images go to one side.
    """
    held = held_out_images((e.image_id for e in examples), val_fraction, seed)
    return [e for e in examples if str(e.image_id) not in held], [e for e in examples if str(e.image_id) in held]


# ---------------------------------------------------------------- your own data: an imagefolder
#
# After Hugging Face's ``imagefolder``: a folder of images (in subfolders or not) and one metadata file beside
# them, ``metadata.csv`` or ``metadata.jsonl``, a row per caption or per question, naming its image by
# ``file_name`` (relative to the folder). An optional ``split`` column puts each row in train, dev or test;
# without one, a fixed fifth of the images is the dev split, so training can always validate.

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
SPLIT_NAMES = {"train": "train", "dev": "dev", "validation": "dev", "val": "dev", "test": "test"}  # HF's too
HELD_OUT = 0.2  # without a split column: the fraction of the images that is the dev split (split_by_image, seed 0)


def imagefolder_split(split: str, where: str = "") -> str:
    """Our name for a split (Hugging Face's ``validation`` is ``dev``); ValueError, after ``where``, for an
    unknown one."""
    if split.strip().lower() not in SPLIT_NAMES:
        raise ValueError(f"{where}split must be one of {', '.join(SPLIT_NAMES)}, not {split[:40]!r}")
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
            "datasets/README.md)")
    path = found[0]
    return path, read_csv_rows(path, csv_columns) if path.suffix == ".csv" else read_jsonl_rows(path)


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
        raise ValueError(f"{path}: {where}: file_name {name[:40]!r} is outside {root} (give it relative to there)")
    if relative.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: {where}: file_name {name[:40]!r} is not an image file name "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not (root / relative).is_file():
        raise FileNotFoundError(f"{path}: {where}: no image {name[:40]!r} in {root}")
    return relative.as_posix(), root / relative


def _imagefolder_rows(root: str | Path, csv_columns: Sequence[str], parse: Callable[[Path, str, dict], T]
                      ) -> tuple[Path, list[tuple[str, str, Path, str | None, T]]]:
    """An imagefolder's metadata file and its records, every one checked, each as (where, image name, image file,
    split, ``parse(metadata file, where, record)``); the split is None for all when there is no split column."""
    root = Path(root)
    path, records = read_metadata(root, ("file_name", *csv_columns))
    if not records:
        raise ValueError(f"{path}: no rows")
    with_split = any("split" in record for _, record in records)
    rows = []
    for where, record in records:
        name, image = _image_file(root, path, where, record)
        split = imagefolder_split(_text(path, where, record, "split"), f"{path}: {where}: ") if with_split else None
        rows.append((where, name, image, split, parse(path, where, record)))
    return path, rows


def imagefolder_splits(root: str | Path) -> set[str]:
    """The splits an imagefolder has: those its split column names, else train and dev (held out)."""
    rows = _imagefolder_rows(root, (), lambda *_: None)[1]
    return {"train", "dev"} if rows[0][3] is None else {row[3] for row in rows}


def _split_rows(root: str | Path, split: str, csv_columns: Sequence[str], parse: Callable[[Path, str, dict], T]
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
        raise ValueError(f"{path}: {len(images)} image(s) are too few to hold a fifth of them out for dev; add a "
                         "split column")
    return [(where, name, image, parsed) for where, name, image, _, parsed in rows
            if (name in held) == (wanted == "dev")]


def load_imagefolder_captions(root: str | Path, split: str = "train") -> list[ImageCaptions]:
    """An imagefolder of captions: ``file_name`` and ``caption`` (a row per caption; JSON lines may give a
    ``captions`` list instead), an image's captions gathered from all its rows. Image ids are the file names."""
    rows = _split_rows(root, split, ("caption",),
                       lambda path, where, record: _texts(path, where, record, "caption", "captions"))
    by_image: dict[str, ImageCaptions] = {}
    for _, name, image, captions in rows:
        by_image.setdefault(name, ImageCaptions(name, image)).captions.extend(captions)
    return list(by_image.values())


def load_imagefolder_questions(root: str | Path, split: str = "train") -> list[VQAExample]:
    """An imagefolder of questions: ``file_name``, ``question`` and ``answer`` (a row per question; JSON lines may
    give an ``answers`` list instead: three or more human answers are scored by the soft VQA accuracy)."""
    rows = _split_rows(root, split, ("question", "answer"), lambda path, where, record: (
        _text(path, where, record, "question"), _texts(path, where, record, "answer", "answers")))
    return [VQAExample(where, question, name, image, answers) for where, name, image, (question, answers) in rows]
