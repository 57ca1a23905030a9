"""Honest confidence: when a caption or an answer is marked "not sure".

A model's probability is not the chance that it is right: the shipped VQA weights say "no 0.84" about as
readily when wrong as when right. So the threshold is measured, not assumed (:mod:`captioner.train.calibrate`).
On dev results, the observed quality (VQA accuracy of an answer, CIDEr-D of a caption against its references) is
fitted as a non-decreasing function of the model's confidence, and a result is "not sure" when its confidence is
below the lowest one at which the fitted quality reaches a target:

- answers: confidence is the top answer's probability; the target is 0.5, so a "not sure" answer is, on
  dev, more likely wrong than right;
- a yes or a no (``yes_no``, optional): the same, with the target 0.85. A yes/no is right half the time by
  chance, so "more likely right than wrong" says little of it; a sure yes/no is right about 85% of the time;
- captions: confidence is the geometric mean of the word probabilities (``<end>`` included), which ranks
  captions by quality better on dev than the arithmetic mean or the least likely word; the target is half
  the dev corpus CIDEr-D, so a "not sure" caption is expected to score less than half a typical one.

Thresholds live with the weights, in ``config.json`` (``"confidence": {"answer": 0.79}``), and are rebuilt by

    captioner calibrate --data flickr8k:DIR --data coco:DIR --weights weights --write

Weights without one mark nothing (``sure`` is None). A reason to doubt a result whatever its confidence (an image
the model sees distorted: :func:`captioner.images.aspect_warning`) marks it not sure with that reason
(:func:`doubted`), with or without a threshold.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence, TypeVar

import numpy as np

R = TypeVar("R")  # a result with ``sure`` and ``warning`` fields, such as captioner.pipeline.Caption

NOT_SURE = "(not sure)"  # the text outputs' suffix
YES_NO = frozenset({"yes", "no"})  # the answers the ``yes_no`` threshold applies to, when the weights record one


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


def doubted(results: Sequence[R], warning: str | None) -> list[R]:
    """``results`` (the captions of one image) marked not sure with ``warning`` as the reason, when there is one."""
    return [replace(r, sure=False, warning=warning) for r in results] if warning else list(results)
