"""Dataset formats: Flickr8k, COCO captions, Karpathy splits, and the VQA sets (DAQUAR, COCO questions, VQA v2,
easy-vqa). Image decoding is in :mod:`captioner.images`.

Every caption loader returns the same thing, a list of :class:`ImageCaptions`, so
training, evaluation and the CLI never care which dataset they came from.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import IMAGE_SUFFIXES, image_id_from_filename


@dataclass
class ImageCaptions:
    """One image and its reference captions (empty when captions are unknown)."""

    image_id: int | str
    path: Path
    captions: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- caption datasets


def read_flickr8k_tokens(token_file: str | Path) -> dict[str, list[str]]:
    """Flickr8k ``IMAGE#N<TAB>caption`` lines as ``{image file name: [captions]}``."""
    refs: dict[str, list[str]] = defaultdict(list)
    for line in Path(token_file).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        key, caption = line.split("\t", 1)
        refs[key.split("#")[0]].append(caption.strip())
    return dict(refs)


def _required(path: Path, hint: str = "") -> Path:
    """``path``, or FileNotFoundError naming it (and ``hint``) when it does not exist."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found{hint}")
    return path


def read_split_list(path: str | Path) -> list[str]:
    """The image names of a split list such as Flickr8k's ``Flickr_8k.devImages.txt``: one a line, blanks skipped."""
    return [n.strip() for n in Path(path).read_text().splitlines() if n.strip()]


def load_flickr8k(root: str | Path, split: str = "train") -> list[ImageCaptions]:
    """Flickr8k in its official layout: ``images/``, ``Flickr8k.token.txt``, ``Flickr_8k.<split>Images.txt``."""
    root = Path(root)
    split_file = _required(root / f"Flickr_8k.{split}Images.txt", " (splits: train, dev, test)")
    refs = read_flickr8k_tokens(root / "Flickr8k.token.txt")
    return [ImageCaptions(n, root / "images" / n, refs.get(n, [])) for n in read_split_list(split_file)]


def load_coco(annotations: str | Path, image_dir: str | Path) -> list[ImageCaptions]:
    """COCO captions (``captions_*.json``) read through pycocotools."""
    from pycocotools.coco import COCO

    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco = COCO(str(annotations))
    out = []
    for img_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(img_id)[0]
        caps = [a["caption"].strip() for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))]
        out.append(ImageCaptions(int(img_id), Path(image_dir) / info["file_name"], caps))
    return out


def load_karpathy(dataset_json: str | Path, image_root: str | Path, split: str = "train") -> list[ImageCaptions]:
    """Karpathy-split ``dataset_{coco,flickr8k,flickr30k}.json``; ``train`` includes ``restval``."""
    data = json.loads(Path(dataset_json).read_text())
    wanted = {"train", "restval"} if split == "train" else {split}
    out = []
    for img in data["images"]:
        if img["split"] not in wanted:
            continue
        path = Path(image_root) / img.get("filepath", "") / img["filename"]
        image_id = int(img["cocoid"]) if "cocoid" in img else img["filename"]
        out.append(ImageCaptions(image_id, path, [s["raw"].strip() for s in img["sentences"]]))
    return out


def load_caption_dataset(name: str, root: str | Path, split: str, annotations: str | Path | None = None) -> list[ImageCaptions]:
    """Pick a loader by dataset name: ``flickr8k``, ``coco`` or ``karpathy``."""
    if name == "flickr8k":
        return load_flickr8k(root, split)
    if name == "coco":
        ann = annotations or Path(root) / "annotations" / f"captions_{split}.json"
        return load_coco(ann, Path(root) / split)
    if name == "karpathy":
        if annotations is None:
            raise ValueError("--annotations must name the dataset_*.json file for karpathy splits")
        return load_karpathy(annotations, root, split)
    raise ValueError(f"unknown dataset {name!r} (choose flickr8k, coco or karpathy)")


# ---------------------------------------------------------------- mixes of datasets


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a training mix, written ``NAME:ROOT[:WEIGHT]`` (``easy-vqa`` needs no root).

    ``weight`` scales how often its examples are drawn in an epoch: 2 shows each twice, 0.5 a random half.
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
        if not name or not (0 < weight < float("inf")):
            raise ValueError(f"dataset {text!r}: expected NAME:ROOT or NAME:ROOT:WEIGHT with a weight > 0")
        return cls(name, root, weight)

    def __str__(self) -> str:
        return ":".join([self.name, *([self.root] if self.root else []), *([f"{self.weight:g}"] if self.weight != 1 else [])])


# ---------------------------------------------------------------- VQA datasets
#
# Every VQA loader returns a list of :class:`VQAExample`, so training, the baselines and the
# CLI never care which dataset a question came from. A question with three or more human answers
# (VQA v2, most COCO questions) is scored by the soft VQA accuracy, one with fewer (DAQUAR,
# easy-vqa, COCO-QA, POPE) by exact match: see ``captioner.vqa_metrics.question_metric``.

VQA_DATASETS = ("daquar", "coco", "vqa2", "easy-vqa", "generated")
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
    import csv

    root = Path(root)
    qa_file = _required(root / f"qa_{split}.csv")
    images = _images_by_stem(root / "images")
    out = []
    with open(qa_file, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            image_id = row["image_id"].strip()
            if image_id not in images:
                raise FileNotFoundError(f"{qa_file}: row {i + 2}: no image {image_id} in {root / 'images'}")
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
        anns = {a["question_id"]: a for a in json.loads(Path(annotations).read_text())["annotations"]}
    out = []
    for q in json.loads(Path(questions).read_text())["questions"]:
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
                row = json.loads(line)
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
    files = {"daquar": f"qa_{split}.csv", "coco": f"qa_{split}.jsonl",
             "vqa2": f"v2_OpenEnded_mscoco_{split}2014_questions.json"}
    return root is not None and name in files and (Path(root) / files[name]).exists()


def load_vqa_dataset(name: str, root: str | Path | None, split: str, questions: str | Path | None = None,
                     annotations: str | Path | None = None) -> list[VQAExample]:
    """Pick a VQA loader by name: ``daquar``, ``coco``, ``vqa2``, ``easy-vqa`` (which needs no ``root``) or
    ``generated`` (``python -m captioner.questions``: ``qa_train.jsonl``, read as ``coco``'s)."""
    if name == "easy-vqa":
        return load_easy_vqa(split)
    if root is None:
        raise ValueError(f"{name} needs a dataset folder ({name}:ROOT)")
    if name == "daquar":
        return load_daquar(root, split)
    if name in ("coco", "generated"):
        return load_coco_questions(root, split)
    if name == "vqa2":
        root = Path(root)
        questions = questions or root / f"v2_OpenEnded_mscoco_{split}2014_questions.json"
        annotations = annotations or root / f"v2_mscoco_{split}2014_annotations.json"
        return load_vqa_v2(questions, annotations, root / f"{split}2014")
    raise ValueError(f"unknown VQA dataset {name!r} (choose {', '.join(VQA_DATASETS)})")


def split_by_image(examples: list[VQAExample], val_fraction: float,
                   seed: int = 0) -> tuple[list[VQAExample], list[VQAExample]]:
    """Hold out a random ``val_fraction`` of the images with all their questions.

    Splitting by question would put the same image in both halves and let a model score
    by remembering images, so whole images go to one side.
    """
    images = sorted({str(e.image_id) for e in examples})
    order = np.random.default_rng(seed).permutation(len(images))
    held = {images[i] for i in order[: round(len(images) * val_fraction)]}
    return [e for e in examples if str(e.image_id) not in held], [e for e in examples if str(e.image_id) in held]
