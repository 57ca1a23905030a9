"""Calibrating the "not sure" thresholds of weights on dev data (``captioner calibrate``).

Why a threshold is measured rather than assumed, and what confidence and quality mean for captions and answers,
is told in :mod:`captioner.confidence`, which applies the thresholds. Here they are fitted: the observed quality
of each dev result (VQA accuracy of the top answer; CIDEr-D of the caption over the dataset's corpus CIDEr-D) is
fitted as a non-decreasing function of the model's confidence (isotonic regression, by pool-adjacent-violators),
and the threshold is the lowest confidence at which the fit reaches the target. A two-fold split by image checks
that the threshold is not fitted to noise.

    captioner calibrate --data flickr8k:DIR --data coco:DIR --weights weights --write
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..confidence import YES_NO
from ..data.datasets import CAPTION_DATASETS, VQA_DATASETS, DatasetSpec, load_caption_dataset, load_vqa_dataset
from ..settings import check, setting

TASKS = ("caption", "answer", "yes_no")
TARGETS = {
    "answer": 0.5,  # fitted VQA accuracy at which answers become "sure"
    "yes_no": 0.85,  # ... at which a yes or a no does (fitted on those answers only)
    "caption": 0.5,
}  # ... and fitted CIDEr-D, as a fraction of the dev corpus CIDEr-D, for captions
MEASURES = {"answer": "VQA accuracy", "yes_no": "VQA accuracy", "caption": "CIDEr-D / corpus CIDEr-D"}
FORMATS = {"caption": CAPTION_DATASETS, "answer": VQA_DATASETS, "yes_no": VQA_DATASETS}  # the dev sets of each
DATA_HELP = (
    f"a dev set as FORMAT:FOLDER, repeatable: its captions calibrate the caption threshold (FORMAT one of "
    f"{', '.join(CAPTION_DATASETS)}), its questions the answer one ({', '.join(VQA_DATASETS)}); required"
)


@dataclass
class CalibrateConfig:
    """The settings of ``captioner calibrate``."""

    data: tuple[str, ...] = setting((), DATA_HELP, metavar="FORMAT:FOLDER")
    weights: str | None = setting(
        None, "a weights entry name, or a folder holding caption/ and vqa/ weights; none: the shipped weights"
    )
    task: str = setting(
        "all",
        "which threshold to calibrate ('all': every one): 'caption' alone for caption weights without VQA "
        "weights; 'yes_no' is the stricter one for yes and no answers",
        choices=(*TASKS, "all"),
    )
    write: bool = setting(False, "record each threshold in its weights folder's config.json (else only print them)")

    def __post_init__(self) -> None:
        check(self)
        if not self.data:
            raise ValueError(
                f"give the dev data with --data FORMAT:FOLDER (caption formats: "
                f"{', '.join(CAPTION_DATASETS)}; question formats: {', '.join(VQA_DATASETS)})"
            )
        for spec in map(DatasetSpec.parse, self.data):
            if not any(spec.name in FORMATS[task] for task in self.tasks):
                raise ValueError(
                    f"--data {str(spec)[:60]!r}: no dev set for the {' or '.join(self.tasks)} threshold "
                    f"(caption formats: {', '.join(CAPTION_DATASETS)}; question formats: "
                    f"{', '.join(VQA_DATASETS)})"
                )
        for task in self.tasks:
            dev_sets(self.data, task)

    @property
    def tasks(self) -> tuple[str, ...]:
        return TASKS if self.task == "all" else (self.task,)


def dev_sets(data: Sequence[str], task: str) -> list[DatasetSpec]:
    """The datasets of ``data`` that calibrate ``task``; ValueError (one line, naming the formats) when none do."""
    specs = [spec for spec in map(DatasetSpec.parse, data) if spec.name in FORMATS[task]]
    if not specs:
        kind = "caption" if task == "caption" else "question"
        raise ValueError(
            f"the {task} threshold needs a {kind} dev set: --data FORMAT:FOLDER, FORMAT one of "
            f"{', '.join(FORMATS[task])}"
        )
    return specs


def isotonic_fit(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``x`` sorted, and the non-decreasing fit of ``y`` on it that is closest in squared error (pool adjacent
    violators: merge neighbouring blocks while a block's mean exceeds the next one's)."""
    order = np.argsort(x, kind="stable")
    blocks: list[list[float]] = []  # [mean, count]
    for value in np.asarray(y, dtype=float)[order]:
        blocks.append([value, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, n2), (m1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    fitted = np.concatenate([np.full(int(n), m) for m, n in blocks])
    return np.asarray(x, dtype=float)[order], fitted


def threshold(confidence: Sequence[float], quality: Sequence[float], target: float) -> float:
    """The lowest confidence at which the isotonic fit of ``quality`` reaches ``target`` (1.0 when it never does,
    so that everything is "not sure")."""
    if len(confidence) == 0 or len(confidence) != len(quality):
        raise ValueError("calibration needs as many quality scores as confidences, and at least one")
    xs, fitted = isotonic_fit(confidence, quality)
    reached = np.flatnonzero(fitted >= target)
    return float(xs[reached[0]]) if reached.size else 1.0


def split_report(confidence: Sequence[float], quality: Sequence[float], t: float) -> dict[str, float]:
    """How many results are sure at threshold ``t``, and the mean quality of the sure and not-sure ones."""
    c, q = np.asarray(confidence, dtype=float), np.asarray(quality, dtype=float)
    sure = c >= t

    def mean(part: np.ndarray) -> float:
        return float(q[part].mean()) if part.any() else float("nan")

    return {
        "threshold": t,
        "results": len(c),
        "sure share": float(sure.mean()),
        "sure quality": mean(sure),
        "not sure quality": mean(~sure),
    }


def held_out_report(
    confidence: Sequence[float], quality: Sequence[float], groups: Sequence[str], target: float
) -> dict[str, float]:
    """Two-fold check that the threshold is not fitted to noise: fit it on the images of one half (split by a hash
    of each result's image), score the other half, swap, and pool the two held-out halves."""
    c, q = np.asarray(confidence, dtype=float), np.asarray(quality, dtype=float)
    half = np.array([zlib.crc32(str(g).encode()) % 2 for g in groups])
    sure = np.zeros(len(c), dtype=bool)
    for fold in (0, 1):
        t = threshold(c[half != fold], q[half != fold], target)
        sure[half == fold] = c[half == fold] >= t
    return {
        "results": len(c),
        "sure share": float(sure.mean()),
        "sure quality": float(q[sure].mean()),
        "not sure quality": float(q[~sure].mean()),
    }


# ---------------------------------------------------------------- dev results of weights


def answer_results(
    weights: str | None, data: Sequence[str], yes_no: bool = False
) -> tuple[list[float], list[float], list[str]]:
    """(top answer probability, VQA accuracy, image) of each dev question of each question dataset of ``data``,
    answered as ``ask`` answers; with ``yes_no``, of those answered yes or no only."""
    from ..metrics.vqa import question_score
    from ..pipeline import VQAPredictor

    model = VQAPredictor.from_pretrained(weights, precision="fp32")
    by_image = defaultdict(list)
    for spec in dev_sets(data, "answer"):
        for e in load_vqa_dataset(spec.name, spec.root, "dev"):
            by_image[e.path].append(e)
    confidence, quality, groups = [], [], []
    for path, questions in by_image.items():
        features = model.preprocess([path])
        answers = model.answer(features.expand(len(questions), *features.shape[1:]), [q.question for q in questions], 1)
        for q, ((answer, p),) in zip(questions, answers):
            if yes_no and answer not in YES_NO:
                continue
            confidence.append(p)
            quality.append(question_score(answer, q.answers))
            groups.append(str(path))
    return confidence, quality, groups


def caption_results(weights: str | None, data: Sequence[str]) -> tuple[list[float], list[float], list[str]]:
    """(caption confidence, CIDEr-D / the dataset's corpus CIDEr-D, image) of each dev image of each caption dataset
    of ``data``, captioned with the weights' own decoding."""
    from ..metrics.captions import evaluate_captions
    from ..pipeline import Captioner

    model = Captioner.from_pretrained(weights, load_vqa=False, precision="fp32")
    confidence, quality, groups = [], [], []
    for spec in dev_sets(data, "caption"):
        items = load_caption_dataset(spec.name, spec.root, "dev")
        captions, scored = {}, {}
        for item, nbest, _ in model.caption_files(items, path_of=lambda it: it.path):
            captions[item.image_id], scored[item.image_id] = nbest[0].text, nbest[0]
        scores = evaluate_captions(
            captions,
            {it.image_id: it.captions for it in items if it.image_id in captions},
            metrics=["CIDEr"],
            tokenizer="python",
        )
        for image_id, cider in zip(scores.image_ids, scores.per_image["CIDEr"]):
            confidence.append(scored[image_id].confidence)  # caption_confidence, as the pipeline gives it
            quality.append(cider / scores.corpus["CIDEr"])
            groups.append(f"{spec.name}/{image_id}")
    return confidence, quality, groups


@dataclass
class Calibration:
    """One task's threshold, with how sure and not-sure dev results fare at it (fitted, and held out)."""

    task: str
    threshold: float
    fitted: dict[str, float]
    held_out: dict[str, float]

    def lines(self) -> list[str]:
        """The report ``captioner calibrate`` prints."""
        target, measure = TARGETS[self.task], MEASURES[self.task]
        out = [
            f"{self.task}: threshold {self.threshold:.4f} (fitted {measure} >= {target}) on "
            f"{self.fitted['results']} dev results"
        ]
        for name, r in (("same dev results", self.fitted), ("two-fold held out", self.held_out)):
            out.append(
                f"  {name:<18} sure {100 * r['sure share']:5.1f}%: {measure} {r['sure quality']:.3f}; "
                f"not sure: {r['not sure quality']:.3f}"
            )
        return out


def calibrate(cfg: CalibrateConfig, task: str) -> Calibration:
    """The ``task`` threshold of ``cfg.weights`` on the dev sets of ``cfg.data`` (fp32, as the thresholds were
    calibrated for the shipped weights)."""
    if task == "caption":
        confidence, quality, groups = caption_results(cfg.weights, cfg.data)
    else:
        confidence, quality, groups = answer_results(cfg.weights, cfg.data, yes_no=task == "yes_no")
    if not confidence:
        raise ValueError(f"no dev results to calibrate the {task} threshold on")
    t = threshold(confidence, quality, TARGETS[task])
    return Calibration(
        task, t, split_report(confidence, quality, t), held_out_report(confidence, quality, groups, TARGETS[task])
    )
