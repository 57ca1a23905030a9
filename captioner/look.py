"""Answers that look: existence and colour questions answered from the concept detectors (:mod:`.concepts`).

The VQA head reads a pooled image vector and a question, and learnt that "is there a ...?" is mostly answered
"yes". Two kinds of question are answered here instead, when the object they name is a known concept:

- **existence** ("is there a dog?", "are there any buses?", "do you see a cat?"): yes when the detector's
  probability, calibrated on held-out training images with present and absent objects weighed alike (Platt
  scaling), says the object is more likely there than not. The answer's probability is that calibrated one, so
  "sure" means what it means for every other answer.
- **colour** ("what color is the bus?"): the colour concepts read where the object fires (its regions weighted
  by a softmax of its logits), so the colour is bound to the object named, not to the photo at large.

Every other question keeps the VQA head's answers, as do existence questions about things that are not COCO objects
("is there a fence?": the calibration was fitted, and POPE measures it, on the 80 COCO objects) and questions
about unknown things.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch

from .choices import WordModel
from .concepts import Concepts
from .lexicon import COCO_OBJECTS, COLORS, PRONOUNS
from .vocab import Vocabulary, pad_ids, tokenize_words

_PLACE = r"(?: (?:in|on) (?:the|this) (?:photo|picture|image|pic|scene|shot|room))?"
EXISTENCE = re.compile(
    r"^(?:is there|are there|is there any|are there any|do you see|can you see|do i see|does the (?:photo|picture|"
    r"image) (?:show|have|contain))(?: an?| any| some)? (?P<object>[a-z ]+?)" + _PLACE + r"$"
)
_THE = r"(?:the |this |that |these |those |his |her |their |its )?"
COLOUR = re.compile(
    r"^(?:what (?:color|colour) (?:is|are) |what is the (?:color|colour) of |what (?:color|colour) is it |what "
    r"(?:color|colour)s? are |what are the (?:color|colour)s? of )" + _THE + r"(?P<object>[a-z' ]+?)" + _PLACE + r"$"
)
RELATIONS = frozenset("on in at of to with near by under over behind beside next from for".split())


@dataclass
class Evidence:
    """What a looked answer rests on: the concept, its probability in the photo, the region (row-major index into
    the encoder's grid) where it fires most, and ``where``, a softmax over the grid of the object's region logits
    (sums to 1), so that the app can show the part of the photo the answer was read from."""

    concept: str
    probability: float
    region: int
    where: list[float]


@dataclass
class Looked:
    """An answer from the concept detectors: (answer, probability) best first, and its evidence."""

    kind: str  # "existence" or "colour"
    answers: list[tuple[str, float]]
    evidence: list[Evidence]


def question_object(question: str) -> tuple[str, str] | None:
    """(kind, object phrase) of an existence or colour question, else None. A colour question's object is the
    thing whose colour is asked: "the man's shirt" -> "shirt", "the headlights on the car" -> "headlights"."""
    text = " ".join(tokenize_words(question))
    for kind, pattern in (("existence", EXISTENCE), ("colour", COLOUR)):
        match = pattern.match(text)
        if match and kind == "existence":
            return kind, match["object"]
        if match:
            words = match["object"].split()
            cut = next((i for i, w in enumerate(words) if w in RELATIONS), len(words))  # before "on the car"
            words = words[:cut]
            if "'s" in words:  # the man 's shirt: the shirt
                words = words[len(words) - words[::-1].index("'s") :]
            return (kind, " ".join(words)) if words else None
    return None


def _calibrated(p: float, existence: dict) -> float:
    """P(present) from the detector's probability ``p``: the weights' Platt scaling (``captioner.train.concepts``)."""
    logit = math.log(max(p, 1e-6) / max(1 - p, 1e-6))
    return 1 / (1 + math.exp(-(existence["slope"] * logit + existence["intercept"])))


def look(
    concepts: Concepts,
    probabilities: torch.Tensor,
    logits: torch.Tensor,
    question: str,
    caption_scores: Callable[[str, list[str]], torch.Tensor | None] | None = None,
) -> Looked | None:
    """The concept detectors' answer to ``question`` about one image (its probabilities ``(K,)`` and region
    logits ``(R, K)``), or None when it is not an existence or colour question about a known object.
    ``caption_scores(object, colours)``: the caption decoder's log-likelihood of "a <colour> <object>" for each
    colour on this image (None: it does not know the object), added to the detectors' (log) shares when given,
    and alone for a colour question about a thing the detectors do not know."""
    asked = question_object(question)
    concept = concepts.vocab.concept_of(asked[1]) if asked else None
    if concept is None and asked and asked[0] == "colour" and caption_scores and asked[1] not in PRONOUNS:
        colours = sorted(set(COLORS.values()))  # a thing the detectors do not know: the captions' colour alone
        score = caption_scores(asked[1], colours)
        if score is None:
            return None
        return Looked("colour", sorted(zip(colours, torch.softmax(score, 0).tolist()), key=lambda a: -a[1]), [])
    if concept is None:
        return None
    k = concepts.vocab.index[concept]
    where = torch.softmax(logits[:, k], 0)  # (R,): where the object is, as weights over the regions
    seen = Evidence(concept, float(probabilities[k]), int(where.argmax()), where.tolist())
    if asked[0] == "existence":
        if concept not in COCO_OBJECTS:  # calibrated and measured (POPE) on the COCO objects only
            return None
        q = _calibrated(seen.probability, concepts.existence)
        answers = [("yes", q), ("no", 1 - q)] if q >= 0.5 else [("no", 1 - q), ("yes", q)]
        return Looked("existence", answers, [seen])
    colours = sorted({c for c in COLORS.values() if c in concepts.vocab.index})
    if not colours:
        return None
    at = where @ torch.sigmoid(logits[:, [concepts.vocab.index[c] for c in colours]])  # (colours,) at the object
    score = torch.log(at / at.sum())
    said = caption_scores(asked[1], colours) if caption_scores is not None else None
    if said is not None:
        score = score + said  # what the captions would say of it
    ranked = sorted(zip(colours, torch.softmax(score, 0).tolist()), key=lambda a: -a[1])
    read = Evidence(ranked[0][0], float(at.max()), seen.region, seen.where)  # read where the object is: its map
    return Looked("colour", ranked, [seen, read])


def colour_scores(words: WordModel, features: torch.Tensor, thing: str, colours: list[str]) -> torch.Tensor | None:
    """The caption decoder's log-likelihood ``(colours,)`` of the words "<colour> <thing>" after "a", on one
    image's features ``(1, R, D)``: how a caption of this photo would colour the thing; None when the caption
    model does not know a word of the thing."""
    index = words.vocab.index
    if any(w not in index for w in thing.split()):
        return None
    seqs = [
        [Vocabulary.start_id, *(index.get(w, Vocabulary.unk_id) for w in ["a", c, *thing.split()])] for c in colours
    ]
    tokens, lengths = pad_ids(seqs)
    with torch.inference_mode():
        logits = words.decoder(features.float().expand(len(seqs), *features.shape[1:]), tokens, lengths - 1)
    steps = torch.log_softmax(logits.float(), -1).split((lengths - 1).tolist())  # per sequence: (steps, vocab)
    return torch.stack([s[torch.arange(1, len(q) - 1), q[2:]].sum() for s, q in zip(steps, seqs)])


def look_all(
    concepts: Concepts, features: torch.Tensor, questions: Sequence[str], words: WordModel | None = None
) -> list[Looked | None]:
    """:func:`look` for each (features row, question) pair, with the caption decoder's colour scores when
    ``words`` (the caption weights) is given."""
    if not any(question_object(q) for q in questions):
        return [None] * len(questions)
    probabilities, logits = concepts.detect(features)
    out = []
    for row, (p, z, q) in enumerate(zip(probabilities, logits, questions)):
        image = features[row : row + 1]
        scores = partial(colour_scores, words, image) if words else None
        out.append(look(concepts, p, z, q, scores))
    return out
