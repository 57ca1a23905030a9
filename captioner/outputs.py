"""What the pipelines return: a :class:`Caption` per caption, an :class:`Answer` per answer (with ``details``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Caption:
    """A decoded caption with the model's confidence in each word."""

    text: str
    words: list[str]
    word_probs: list[float]  # probability of each word when it was chosen
    log_prob: float  # total, ``<end>`` included
    score: float  # what the decoder ranked by (length-penalised log_prob)
    finished: bool  # False when decoding hit max_length before ``<end>``
    tokens: list[int]
    confidence: float  # geometric mean word probability (captioner.confidence.caption_confidence)
    sure: bool | None  # confidence at or above the weights' "not sure" threshold; None when they record none
    warning: str | None = None  # why it is not sure whatever its confidence (images.aspect_warning); None: none


@dataclass
class Answer:
    """An answer with its probability, and whether that clears the weights' "not sure" threshold (None: the
    weights record none, or the answer is one of several choices)."""

    text: str
    probability: float
    sure: bool | None
