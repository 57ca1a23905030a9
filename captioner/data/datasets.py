"""Datasets by name, and mixes of them: what ``--data NAME:ROOT[:WEIGHT]`` reads. The formats are in
:mod:`.captions` (Flickr8k, COCO captions, Karpathy splits), :mod:`.vqa` (DAQUAR, COCO questions, VQA v2,
easy-vqa) and :mod:`.imagefolder` (your own photos, captions or questions); image decoding is in
:mod:`captioner.images`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..io import shorten
from .captions import ImageCaptions, load_coco, load_flickr8k, load_karpathy
from .imagefolder import imagefolder_split, imagefolder_splits, load_imagefolder_captions, load_imagefolder_questions
from .vqa import VQAExample, load_coco_questions, load_daquar, load_easy_vqa, load_vqa_v2

CAPTION_DATASETS = ("flickr8k", "coco", "karpathy", "imagefolder")
VQA_DATASETS = ("daquar", "coco", "vqa2", "easy-vqa", "generated", "imagefolder")
TRAIN_ONLY = ("generated",)  # question sets only trained on: never validated, so they never pick best/


def load_caption_dataset(
    name: str, root: str | Path | None, split: str, annotations: str | Path | None = None
) -> list[ImageCaptions]:
    """Pick a loader by dataset name: ``flickr8k``, ``coco``, ``karpathy`` or ``imagefolder``."""
    if name not in CAPTION_DATASETS:
        raise ValueError(f"unknown dataset {shorten(name)!r} (choose {', '.join(CAPTION_DATASETS)})")
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


def vqa_split_exists(name: str, root: str | Path | None, split: str) -> bool:
    """Whether dataset ``name`` has questions for ``split`` (DAQUAR here ships only ``train``)."""
    if name == "easy-vqa":
        return split in ("train", "test")
    if name == "imagefolder":
        return root is not None and imagefolder_split(split) in imagefolder_splits(root)
    files = {
        "daquar": f"qa_{split}.csv",
        "coco": f"qa_{split}.jsonl",
        "vqa2": f"v2_OpenEnded_mscoco_{split}2014_questions.json",
    }
    return root is not None and name in files and (Path(root) / files[name]).exists()


def load_vqa_dataset(
    name: str,
    root: str | Path | None,
    split: str,
    questions: str | Path | None = None,
    annotations: str | Path | None = None,
) -> list[VQAExample]:
    """Pick a VQA loader by name: ``daquar``, ``coco``, ``vqa2``, ``easy-vqa`` (which needs no ``root``),
    ``generated`` (``python -m captioner.data.questions``: ``qa_train.jsonl``, read as ``coco``'s) or
    ``imagefolder``."""
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
    raise ValueError(f"unknown VQA dataset {shorten(name)!r} (choose {', '.join(VQA_DATASETS)})")


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
            raise ValueError(
                f"dataset {text[:60]!r}: expected NAME:ROOT or NAME:ROOT:WEIGHT with a weight above 0 "
                f"and at most {MAX_WEIGHT}"
            )
        return cls(name, root, weight)

    def __str__(self) -> str:
        weight = [f"{self.weight:g}"] if self.weight != 1 else []
        return ":".join([self.name, *([self.root] if self.root else []), *weight])
