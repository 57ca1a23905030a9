"""VQA accuracy as the official VQA v2 evaluation (vqaEval.py) computes it, and exact match.

The soft accuracy (:func:`vqa_soft_accuracy`), for a question with three or more human answers, follows
vqaEval.py line for line: when the humans disagree, the prediction and their answers are normalized
(punctuation, number words, articles, contractions); when they all gave the same answer, nothing is (only
tabs, newlines and outer spaces go), so "Yes" earns nothing against ten "yes". A prediction then earns
min(#humans who gave it / 3, 1), averaged over the leave-one-out subsets of the human answers.

Questions with one or two answers (DAQUAR, COCO-QA, POPE, your own data) are the project's own rule, not
vqaEval.py's (which would give them 0 or 1/3): exact match, after normalization, against any of them
(:func:`question_metric`). :func:`vqa_report` counts these rows apart (``by_metric``), so that a report can say
how much of its accuracy is exact match.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..answers import normalize_answer
from ..lexicon import AUXILIARIES
from ..vocab import tokenize_words


def _plain(answer: str) -> str:
    """What vqaEval.py does to every answer: tabs and newlines to spaces, outer spaces stripped."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


def vqa_soft_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Official VQA accuracy of one prediction: min(matches / 3, 1) averaged over leave-one-out subsets, with
    answers normalized only when the humans disagree, as vqaEval.py does."""
    if not human_answers:
        raise ValueError("no human answers")
    pred, gts = _plain(prediction), [_plain(a) for a in human_answers]
    if len(set(gts)) > 1:
        pred, gts = normalize_answer(pred), [normalize_answer(a) for a in gts]
    return sum(min(1.0, sum(g == pred for j, g in enumerate(gts) if j != i) / 3) for i in range(len(gts))) / len(gts)


def exact_match(prediction: str, answer: str) -> bool:
    """Plain accuracy for single-reference sets such as DAQUAR, after the same normalization."""
    return normalize_answer(prediction) == normalize_answer(answer)


def question_metric(answers: Sequence[str]) -> str:
    """How one question is scored: the soft VQA accuracy needs several humans (three or more answers);
    with fewer, a prediction is right when it matches one of them."""
    return "vqa" if len(answers) >= 3 else "exact"


def question_score(prediction: str, answers: Sequence[str], metric: str = "auto") -> float:
    """The score of one prediction: ``metric`` "vqa" (soft accuracy), "exact", or "auto" (:func:`question_metric`)."""
    if metric == "auto":
        metric = question_metric(answers)
    return (
        vqa_soft_accuracy(prediction, answers)
        if metric == "vqa"
        else float(any(exact_match(prediction, a) for a in answers))
    )


QUESTION_TYPES = ("yes/no", "number", "color", "other")


def question_type(question: str) -> str:
    """A question's type from its words, one of :data:`QUESTION_TYPES`: "yes/no" when it opens with an auxiliary
    verb ("is there a dog?", "does the man ..."), "number" when it opens with "how many", "color" when it names
    colour ("what color is the bus?"), else "other". Read from the question alone, so that every dataset can be
    broken down alike (VQA v2's own answer types come from the answers, which other sets lack)."""
    words = tokenize_words(question)
    if words[:1] and words[0] in AUXILIARIES:
        return "yes/no"
    if words[:2] == ["how", "many"]:
        return "number"
    return "color" if {"color", "colour", "colors", "colours"} & set(words) else "other"


def vqa_report(
    predictions: Mapping, answers: Mapping, answer_types: Mapping | None = None, metric: str = "auto"
) -> dict:
    """Accuracy (0-1) of ``predictions`` ({qid: answer}) against ``answers`` ({qid: [answers]}), overall and
    per answer type. ``metric`` "vqa" is the official soft accuracy; "exact" counts a prediction right
    when it matches any listed answer; "auto" picks one of the two per question (:func:`question_metric`), and
    ``by_metric`` gives the accuracy and count of each kind of row ("vqa", "exact": fewer than 3 answers)."""
    if metric not in ("vqa", "exact", "auto"):
        raise ValueError(f"unknown metric {metric!r} (choose vqa, exact or auto)")
    orphans = [q for q in predictions if q not in answers]
    if orphans:
        raise ValueError(f"{len(orphans)} prediction(s) have no reference answers (first: {orphans[0]!r})")
    if not predictions:
        raise ValueError("no predictions to evaluate")
    score = {q: question_score(p, answers[q], metric) for q, p in predictions.items()}
    report = {"metric": metric, "accuracy": float(np.mean(list(score.values()))), "questions": len(score)}
    if metric == "auto":  # which rows the soft accuracy scored, and which exact match
        by_metric: dict = {}
        for q, s in score.items():
            by_metric.setdefault(question_metric(answers[q]), []).append(s)
        report["by_metric"] = {
            m: {"accuracy": float(np.mean(v)), "questions": len(v)} for m, v in sorted(by_metric.items())
        }
    if answer_types:
        groups: dict = {}
        for q, s in score.items():
            groups.setdefault(answer_types.get(q, "unknown"), []).append(s)
        report["per_type"] = {
            t: {"accuracy": float(np.mean(v)), "questions": len(v)} for t, v in sorted(groups.items())
        }
    return report
