"""VQA dataset formats: DAQUAR, COCO questions (and generated ones), VQA v2 and easy-vqa, and splitting a set
by image.

Every VQA loader returns a list of :class:`VQAExample`, so training, the baselines and the CLI never care which
dataset a question came from. A question with three or more human answers (VQA v2, most COCO questions) is scored
by the soft VQA accuracy, one with fewer (DAQUAR, easy-vqa, COCO-QA, POPE) by exact match: see
:func:`captioner.metrics.vqa.question_metric`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..images import image_id_from_filename, images_by_stem
from ..io import parse_json, read_csv_rows, read_json, required_path, shorten


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


def load_daquar(root: str | Path, split: str = "train") -> list[VQAExample]:
    """DAQUAR as ``qa_<split>.csv`` (question, answer, image_id) beside ``images/<image_id>.jpg``."""
    root = Path(root)
    qa_file = required_path(root / f"qa_{split}.csv")
    images = images_by_stem(required_path(root / "images"))
    out = []
    for i, (where, row) in enumerate(read_csv_rows(qa_file, ("question", "answer", "image_id"))[1]):
        image_id = row["image_id"].strip()
        if image_id not in images:
            raise FileNotFoundError(f"{qa_file}: {where}: no image {shorten(image_id)!r} in {root / 'images'}")
        out.append(VQAExample(i, row["question"].strip(), image_id, images[image_id], [daquar_answer(row["answer"])]))
    return out


def load_vqa_v2(questions: str | Path, annotations: str | Path | None, image_dir: str | Path) -> list[VQAExample]:
    """The official VQA v2 files: questions JSON, annotations JSON (ten answers each) and a COCO image folder.

    Images are matched by COCO id, so both ``COCO_train2014_000000123456.jpg`` and
    ``000000123456.jpg`` names work. ``annotations=None`` loads questions without answers (test-dev).
    """
    image_dir = Path(image_dir)
    images = images_by_stem(image_dir, image_id_from_filename)
    anns = {}
    if annotations is not None:
        anns = {a["question_id"]: a for a in read_json(annotations)["annotations"]}
    out = []
    for q in read_json(questions)["questions"]:
        image_id = int(q["image_id"])
        if image_id not in images:
            raise FileNotFoundError(f"{questions}: question {q['question_id']}: no image {image_id} in {image_dir}")
        ann = anns.get(q["question_id"], {})
        out.append(
            VQAExample(
                q["question_id"],
                q["question"].strip(),
                image_id,
                images[image_id],
                [a["answer"] for a in ann.get("answers", [])],
                ann.get("answer_type"),
            )
        )
    return out


def load_coco_questions(root: str | Path, split: str = "train") -> list[VQAExample]:
    """Questions as ``qa_<split>.jsonl``: on COCO images beside it in ``<split>/<12-digit id>.jpg``, or on any
    image a record names by ``file_name`` (relative to ``root``, or absolute), as generated questions do.

    Each line is ``{"image_id", "question", "answers": [every human answer], "source"}``, with ``file_name`` and
    ``kind`` optional. The question's type is its ``kind`` (generated questions: object, number, color, location,
    yes/no), else its ``source`` (vqa_v2, okvqa, cocoqa, ...), for per-type reports.
    """
    root = Path(root)
    qa_file = required_path(root / f"qa_{split}.jsonl")
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
                    images = images_by_stem(root / split, image_id_from_filename)
                if image_id not in images:
                    raise FileNotFoundError(f"{qa_file}: line {i + 1}: no image {image_id} in {root / split}")
                path = images[image_id]
            kind = row.get("kind") or row.get("source")
            out.append(VQAExample(f"{split}-{i}", question, image_id, path, answers, kind))
    return out


def load_easy_vqa(split: str = "train") -> list[VQAExample]:
    """The synthetic easy-vqa set (``pip install easy-vqa``): coloured shapes, 13 answers."""
    import easy_vqa

    if split not in ("train", "test"):
        raise ValueError(f"easy-vqa has splits train and test, not {split!r}")
    texts, answers, image_ids = getattr(easy_vqa, f"get_{split}_questions")()
    paths = getattr(easy_vqa, f"get_{split}_image_paths")()
    return [
        VQAExample(i, q, image_id, Path(paths[image_id]), [a])
        for i, (q, a, image_id) in enumerate(zip(texts, answers, image_ids))
    ]


def held_out_images(image_ids: Iterable[int | str], val_fraction: float, seed: int = 0) -> set[str]:
    """A random ``val_fraction`` of the distinct ``image_ids`` (as strings), the same for the same ids and seed."""
    images = sorted({str(i) for i in image_ids})
    order = np.random.default_rng(seed).permutation(len(images))
    return {images[i] for i in order[: round(len(images) * val_fraction)]}


def split_by_image(
    examples: list[VQAExample], val_fraction: float, seed: int = 0
) -> tuple[list[VQAExample], list[VQAExample]]:
    """Hold out a random ``val_fraction`` of the images with all their questions.

    Splitting by question would put the same image in both halves and let a model score
    by remembering images, so whole images go to one side.
    """
    held = held_out_images((e.image_id for e in examples), val_fraction, seed)
    return [e for e in examples if str(e.image_id) not in held], [e for e in examples if str(e.image_id) in held]
