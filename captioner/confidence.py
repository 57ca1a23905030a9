"""Honest confidence: when a caption or an answer is marked "not sure".

A model's probability is not the chance that it is right: the shipped VQA weights say "no 0.84" about as
readily when wrong as when right. So the threshold is measured, not assumed. On dev results, the
observed quality (VQA accuracy of an answer, CIDEr-D of a caption against its references) is fitted as a
non-decreasing function of the model's confidence (isotonic regression, by pool-adjacent-violators), and
a result is "not sure" when its confidence is below the lowest one at which the fitted quality reaches
a target:

- answers: confidence is the top answer's probability; the target is 0.5, so a "not sure" answer is, on
  dev, more likely wrong than right;
- captions: confidence is the geometric mean of the word probabilities (``<end>`` included), which ranks
  captions by quality better on dev than the arithmetic mean or the least likely word; the target is half
  the dev corpus CIDEr-D, so a "not sure" caption is expected to score less than half a typical one.

Thresholds live with the weights, in ``config.json`` (``"confidence": {"answer": 0.79}``), and are rebuilt by

    python -m captioner.confidence --weights weights --write

Weights without one mark nothing (``sure`` is None).
"""
from __future__ import annotations

import argparse
import sys
import zlib
from collections import defaultdict
from typing import Sequence

import numpy as np

ANSWER_TARGET = 0.5  # fitted VQA accuracy at which answers become "sure"
CAPTION_TARGET = 0.5  # ... and fitted CIDEr-D, as a fraction of the dev corpus CIDEr-D, for captions
NOT_SURE = "(not sure)"  # the text outputs' suffix


def caption_confidence(log_prob: float, words: int) -> float:
    """Geometric mean word probability of a caption of ``words`` words whose total log-prob (``<end>``
    included) is ``log_prob``."""
    return float(np.exp(log_prob / (words + 1)))


def is_sure(confidence: float, threshold: float | None) -> bool | None:
    """Whether a result of this confidence is "sure"; None when the weights record no threshold."""
    return None if threshold is None else bool(confidence >= threshold)


def marked(text: str, sure: bool | None) -> str:
    """``text`` as the text outputs show a result: with the :data:`NOT_SURE` suffix when it is not sure."""
    return f"{text} {NOT_SURE}" if sure is False else text


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
    mean = lambda part: float(q[part].mean()) if part.any() else float("nan")
    return {"threshold": t, "results": len(c), "sure share": float(sure.mean()), "sure quality": mean(sure),
            "not sure quality": mean(~sure)}


def held_out_report(confidence: Sequence[float], quality: Sequence[float], groups: Sequence[str],
                    target: float) -> dict[str, float]:
    """Two-fold check that the threshold is not fitted to noise: fit it on the images of one half (split by a hash
    of each result's image), score the other half, swap, and pool the two held-out halves."""
    c, q = np.asarray(confidence, dtype=float), np.asarray(quality, dtype=float)
    half = np.array([zlib.crc32(str(g).encode()) % 2 for g in groups])
    sure = np.zeros(len(c), dtype=bool)
    for fold in (0, 1):
        t = threshold(c[half != fold], q[half != fold], target)
        sure[half == fold] = c[half == fold] >= t
    return {"results": len(c), "sure share": float(sure.mean()), "sure quality": float(q[sure].mean()),
            "not sure quality": float(q[~sure].mean())}


# ---------------------------------------------------------------- calibrating shipped weights on dev


def answer_results(weights: str | None, coco: str) -> tuple[list[float], list[float], list[str]]:
    """(top answer probability, VQA accuracy, image) of each COCO dev question, answered as ``ask`` answers."""
    from .data.datasets import load_vqa_dataset
    from .metrics.vqa import question_score
    from .pipeline import VQAPredictor

    model = VQAPredictor.from_pretrained(weights, precision="fp32")
    by_image = defaultdict(list)
    for e in load_vqa_dataset("coco", coco, "dev"):
        by_image[e.path].append(e)
    confidence, quality, groups = [], [], []
    for path, questions in by_image.items():
        features = model.preprocess([path])
        answers = model.answer(features.expand(len(questions), *features.shape[1:]), [q.question for q in questions], 1)
        for q, ((answer, p),) in zip(questions, answers):
            confidence.append(p)
            quality.append(question_score(answer, q.answers))
            groups.append(str(path))
    return confidence, quality, groups


def caption_results(weights: str | None, data: Sequence[str]) -> tuple[list[float], list[float], list[str]]:
    """(caption confidence, CIDEr-D / the dataset's corpus CIDEr-D, image) of each dev image of each dataset,
    captioned with the weights' own decoding."""
    from .data.datasets import DatasetSpec, load_caption_dataset
    from .metrics.captions import evaluate_captions
    from .pipeline import Captioner

    model = Captioner.from_pretrained(weights, load_vqa=False, precision="fp32")
    confidence, quality, groups = [], [], []
    for spec in map(DatasetSpec.parse, data):
        items = load_caption_dataset(spec.name, spec.root, "dev")
        captions, scored = {}, {}
        for item, nbest, _ in model.caption_files(items, path_of=lambda it: it.path):
            captions[item.image_id], scored[item.image_id] = nbest[0].text, nbest[0]
        scores = evaluate_captions(captions, {it.image_id: it.captions for it in items if it.image_id in captions},
                                   metrics=["CIDEr"], tokenizer="python")
        for image_id, cider in zip(scores.image_ids, scores.per_image["CIDEr"]):
            confidence.append(scored[image_id].confidence)  # caption_confidence, as the pipeline gives it
            quality.append(cider / scores.corpus["CIDEr"])
            groups.append(f"{spec.name}/{image_id}")
    return confidence, quality, groups


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Calibrate the 'not sure' thresholds of weights on dev data and print how "
                                            "accurate sure and not-sure results are.")
    p.add_argument("--weights", default=None, help="a weights folder holding caption and vqa/ weights, or an entry "
                                                   "name (default: the shipped weights)")
    p.add_argument("--data", action="append", metavar="NAME:ROOT",
                   help="caption dev data, repeatable (default: flickr8k and coco in ../shared/data)")
    p.add_argument("--coco", default="../shared/data/coco", help="COCO folder for the dev questions "
                                                                 "(default: ../shared/data/coco)")
    p.add_argument("--write", action="store_true", help="record the thresholds in each weights folder's config.json "
                                                        "(default: print only)")
    p.add_argument("--task", choices=["caption", "answer", "both"], default="both",
                   help="which threshold to calibrate: 'caption' alone for caption weights without VQA weights "
                        "(default: both)")
    args = p.parse_args(argv)
    from .io import one_line, read_json, write_json
    from .pretrained import resolve_weights

    runs = {"caption": lambda: caption_results(args.weights, args.data or ["flickr8k:../shared/data/flickr8k",
                                                                          "coco:../shared/data/coco"]),
            "answer": lambda: answer_results(args.weights, args.coco)}
    targets = {"caption": CAPTION_TARGET, "answer": ANSWER_TARGET}
    for task in runs if args.task == "both" else [args.task]:
        try:
            confidence, quality, groups = runs[task]()
        except (FileNotFoundError, ValueError) as e:
            print(f"captioner.confidence: error: {one_line(e)}", file=sys.stderr)
            return 2
        target = targets[task]
        t = threshold(confidence, quality, target)
        fitted, held = split_report(confidence, quality, t), held_out_report(confidence, quality, groups, target)
        measure = "VQA accuracy" if task == "answer" else "CIDEr-D / corpus CIDEr-D"
        print(f"{task}: threshold {t:.4f} (fitted {measure} >= {target}) on {fitted['results']} dev results")
        for name, r in (("same dev results", fitted), ("two-fold held out", held)):
            print(f"  {name:<18} sure {100 * r['sure share']:5.1f}%: {measure} {r['sure quality']:.3f}; "
                  f"not sure: {r['not sure quality']:.3f}")
        if args.write:
            folder = resolve_weights(args.weights, "vqa" if task == "answer" else "caption")[0]
            config = read_json(folder / "config.json")
            config["confidence"] = {task: round(t, 4)}
            write_json(folder / "config.json", config)
            print(f"  written to {folder / 'config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
