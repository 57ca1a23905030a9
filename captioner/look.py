"""Answers that look: existence and colour questions answered from the concept detectors (:mod:`.concepts`).

The VQA head reads a pooled image vector and a question, and learnt that "is there a ...?" is mostly answered
"yes". Two kinds of question are answered here instead, when the object they name is a known concept:

- **existence** ("is there a dog?", "are there any buses?", "do you see a cat?"): yes when the detector's
  probability, calibrated on held-out training images with present and absent objects weighed alike, says the
  object is more likely there than not. The answer's probability is that calibrated one, so "sure" means what it
  means for every other answer.
- **colour** ("what color is the bus?"): the colour concepts read where the object fires (its regions weighted
  by a softmax of its logits), so the colour is bound to the object named, not to the photo at large.

Every other question, and any naming an unknown object, keeps the VQA head's answers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from .concepts import Concepts
from .lexicon import COLORS
from .vocab import tokenize_words

_PLACE = r"(?: (?:in|on) (?:the|this) (?:photo|picture|image|pic|scene|shot|room))?"
EXISTENCE = re.compile(
    r"^(?:is there|are there|is there any|are there any|do you see|can you see|do i see|does the (?:photo|picture|"
    r"image) (?:show|have|contain))(?: an?| any| some)? (?P<object>[a-z ]+?)" + _PLACE + r"$"
)
COLOUR = re.compile(
    r"^what (?:color|colour) (?:is|are) (?:the |this |that |these |those )?(?P<object>[a-z ]+?)" + _PLACE + r"$"
)


@dataclass
class Evidence:
    """What a looked answer rests on: the concept, its probability in the photo, and the region (row-major index
    into the encoder's grid) where it fires most."""

    concept: str
    probability: float
    region: int


@dataclass
class Looked:
    """An answer from the concept detectors: (answer, probability) best first, and its evidence."""

    kind: str  # "existence" or "colour"
    answers: list[tuple[str, float]]
    evidence: list[Evidence]


def question_object(question: str) -> tuple[str, str] | None:
    """(kind, object phrase) of an existence or colour question, else None."""
    text = " ".join(tokenize_words(question))
    for kind, pattern in (("existence", EXISTENCE), ("colour", COLOUR)):
        match = pattern.match(text)
        if match:
            return kind, match["object"]
    return None


def _calibrated(p: float, existence: dict) -> float:
    """P(present) from the detector's probability, by the weights' threshold: a logistic in logit space whose
    midpoint is the threshold and whose slope puts the "sure" bands at 0.9."""
    logit = lambda x: math.log(max(x, 1e-6) / max(1 - x, 1e-6))  # noqa: E731
    t, hi, lo = logit(existence["threshold"]), logit(existence["sure_yes"]), logit(existence["sure_no"])
    z = logit(p) - t
    span = (hi - t) if z > 0 else (t - lo)
    return 1 / (1 + math.exp(-z * math.log(9) / max(span, 1e-3)))


def look(concepts: Concepts, probabilities: torch.Tensor, logits: torch.Tensor, question: str) -> Looked | None:
    """The concept detectors' answer to ``question`` about one image (its probabilities ``(K,)`` and region
    logits ``(R, K)``), or None when it is not an existence or colour question about a known object."""
    asked = question_object(question)
    concept = concepts.vocab.concept_of(asked[1]) if asked else None
    if concept is None:
        return None
    k = concepts.vocab.index[concept]
    region = int(logits[:, k].argmax())
    seen = Evidence(concept, float(probabilities[k]), region)
    if asked[0] == "existence":
        q = _calibrated(seen.probability, concepts.existence)
        answers = [("yes", q), ("no", 1 - q)] if q >= 0.5 else [("no", 1 - q), ("yes", q)]
        return Looked("existence", answers, [seen])
    colours = sorted({c for c in COLORS.values() if c in concepts.vocab.index})
    if not colours:
        return None
    where = torch.softmax(logits[:, k], 0)  # (R,): where the object is, as weights over the regions
    at = where @ torch.sigmoid(logits[:, [concepts.vocab.index[c] for c in colours]])  # (colours,) at the object
    shares = at / at.sum()
    ranked = sorted(zip(colours, shares.tolist()), key=lambda a: -a[1])
    return Looked("colour", ranked, [seen, Evidence(ranked[0][0], float(at.max()), region)])


def look_all(concepts: Concepts, features: torch.Tensor, questions: Sequence[str]) -> list[Looked | None]:
    """:func:`look` for each (features row, question) pair; the detectors run once per distinct image row."""
    if not any(question_object(q) for q in questions):
        return [None] * len(questions)
    probabilities, logits = concepts.detect(features)
    return [look(concepts, p, z, q) for p, z, q in zip(probabilities, logits, questions)]
