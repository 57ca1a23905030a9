"""Scores of the concept detectors: average precision per concept, its mean per word class, and how well the
existence rule's yes/no separates present from absent objects (POPE's accuracy, F1 and yes-ratio)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from ..concepts import named_objects
from ..lexicon import COCO_OBJECTS


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the precision-recall curve of one concept over images, as the mean precision at each positive
    in the ranking by ``scores`` (the uninterpolated AP of TREC and Fang et al.); None with no positive."""
    positives = int(labels.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(bool)
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].sum() / positives)


def mean_average_precision(scores: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict:
    """AP of every concept with a positive image among ``scores``/``labels`` ``(N, K)``: ``{"mAP", "concepts",
    "by_class": {class: {"mAP", "concepts"}}}``."""
    by_class = defaultdict(list)
    for k, word_class in enumerate(classes):
        ap = average_precision(scores[:, k], labels[:, k])
        if ap is not None:
            by_class[word_class].append(ap)
    every = [ap for aps in by_class.values() for ap in aps]
    return {
        "mAP": float(np.mean(every)) if every else 0.0,
        "concepts": len(every),
        "by_class": {c: {"mAP": float(np.mean(aps)), "concepts": len(aps)} for c, aps in sorted(by_class.items())},
    }


def yes_no_scores(said_yes: Sequence[bool], present: Sequence[bool]) -> dict:
    """POPE's figures for yes/no answers to "is there a X?": accuracy, precision, recall and F1 of "yes", and the
    share of questions answered yes (a model that always says yes scores 50% on POPE's balanced questions)."""
    said, truth = np.asarray(said_yes, bool), np.asarray(present, bool)
    if not len(said):
        raise ValueError("no yes/no answers to score")
    tp, fp, fn = int((said & truth).sum()), int((said & ~truth).sum()), int((~said & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": float((said == truth).mean()),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "yes_ratio": float(said.mean()),
        "questions": len(said),
    }


def pope_items(captions: Sequence[Sequence[str]], per_image: int = 3, seed: int = 0) -> list[tuple[int, str, bool]]:
    """POPE's random setting (Li et al. 2023) with presence read from human captions: for each image (its
    captions), up to ``per_image`` COCO objects named by 2 or more of them (present) and as many named by none
    (absent), drawn at random (``seed``), as (image index, object, present). An image with no present object adds
    none."""
    rng = np.random.default_rng(seed)
    items = []
    for i, caps in enumerate(captions):
        counts = Counter(o for c in caps for o in named_objects(c))
        present = sorted(o for o, n in counts.items() if n >= 2)
        absent = sorted(o for o in COCO_OBJECTS if o not in counts)
        k = min(per_image, len(present), len(absent))
        if k == 0:
            continue
        items += [(i, str(o), True) for o in rng.choice(present, k, replace=False)]
        items += [(i, str(o), False) for o in rng.choice(absent, k, replace=False)]
    return items
