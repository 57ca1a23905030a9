"""Multiple-choice answers (Visual7W's form of question): every candidate gets a probability, and they sum to 1.

A choices string separates candidates with ``|`` (:data:`SEPARATOR`); a backslash escapes it, so ``\\|`` is a
``|`` inside a candidate and ``\\\\`` a backslash: ``"tennis|baseball|a\\|b"`` offers ``tennis``, ``baseball`` and
``a|b``. :func:`check_choices` refuses, in one line, too few or too many candidates, a blank or too long one, and
a candidate given twice (compared as the VQA evaluation compares answers: "Two" is "2").

How a candidate is scored (:func:`choice_probabilities`), on one scale, a softmax over the candidates of

- ``vqa_weight * log p_vqa(candidate)`` for a candidate that holds an answer of the VQA model's vocabulary: the
  most probable of the answers whose words it holds, plurals folded (:class:`AnswerWords`), so "playing tennis"
  reads the VQA model's "tennis" when that is likelier than its "playing tennis", and "goats" reads "goat";
- ``oov_bias + word_weight * w(candidate) + unknown_weight * u(candidate)`` for any other, scored by a model
  of its words: the caption decoder. ``w`` is the mean, over the candidate's words, of the most log-probability
  the decoder gives the word at any step while it writes its greedy caption of the image (:func:`word_scores`):
  how readily the caption model would say the word about this photo. A word outside the caption vocabulary
  is read as ``<unk>``, and ``u`` (the fraction of such words) charges it for sharing ``<unk>``'s mass;
- plus, for every candidate, in the answer vocabulary or not, ``concept_weight * c(candidate) +
  no_concept_weight * n(candidate)`` when the VQA weights have concept detectors beside them
  (:mod:`captioner.concepts`): ``c`` is the mean log-probability that the photo shows each concept the candidate
  names, its plurals and synonyms mapped ("goats" is ``goat``), and ``n`` is 1 for a candidate that names
  none. The same concepts score "tennis" and "playing tennis", so the two wordings pick the same winner.

Why these: on the COCO dev 4-way benchmark (``benchmarks/bench_vqa.py``, its multiple-choice section) the caption
decoder's view of the image did better than the alternatives tried (docs/experiments.md): its likelihood of the
answer as the start of a caption (``a <answer>``) or of the answer alone, and answer-word embeddings from the VQA
model's question-word table, which know what a word means but not whether it is in the photo. The six weights of the
rule are fitted together (``captioner fit-choices``, :mod:`captioner.train.fit_choices`: a conditional logit, the
right candidate's log-probability of 4-way items) on COCO *train* questions, never dev, and recorded with the VQA
weights (``config.json``'s ``"choices"``); :data:`SHIPPED`, the fit for the shipped weights, stands in for weights
that record none.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Sequence

import torch

from .answers import normalize_answer
from .decoding import DecodeConfig, decode
from .lexicon import plural
from .options import CHOICE_LIMITS, ESCAPE, SEPARATOR, ChoiceLimits  # noqa: F401 (torch-free, so there)
from .vocab import Vocabulary, pad_ids, tokenize_words

SHOWN = 40  # characters of a candidate that an error message quotes, at most


@dataclass(frozen=True)
class ChoiceWeights:
    """The six weights of the scoring rule (see the module docstring), fitted by ``captioner fit-choices``."""

    vqa_weight: float  # on log p_vqa of an in-vocabulary candidate: the VQA softmax's temperature, inverted
    oov_bias: float  # where a candidate outside the answer vocabulary starts
    word_weight: float  # on w, the caption decoder's mean word log-probability
    unknown_weight: float  # on u, the fraction of words outside the caption vocabulary
    concept_weight: float = 0.0  # on c, the mean log-probability of the concepts the candidate names
    no_concept_weight: float = 0.0  # on n, 1 for a candidate that names no concept (weights fitted without: 0)

    def vector(self) -> torch.Tensor:
        """The weights in the order of :func:`choice_features`' inputs ``(6,)``."""
        return torch.tensor([getattr(self, f.name) for f in fields(self)])


# Fitted on the 7,466 COCO train questions the model reads (4-way, seed 0) for the shipped weights/vqa and
# weights/caption, and recorded in weights/vqa/config.json:
#     captioner fit-choices --data coco:../shared/data/coco --weights weights
SHIPPED = ChoiceWeights(vqa_weight=1.186, oov_bias=-2.077, word_weight=0.351, unknown_weight=-2.258)


def parse_choices(text: str, limits: ChoiceLimits = CHOICE_LIMITS) -> list[str]:
    """The candidates of a choices string (``|`` between them, ``\\`` escaping ``|`` or itself), each stripped,
    checked by :func:`check_choices`; ValueError (one line) when they cannot be used."""
    if len(text) > limits.max_choices * (limits.max_choice_chars + 2):  # past any acceptable string: do not split it
        raise ValueError(
            f"the choices are too long ({len(text)} characters; at most {limits.max_choices} choices "
            f"of {limits.max_choice_chars} characters)"
        )
    choices, current, chars = [], [], iter(text)
    for ch in chars:
        if ch == ESCAPE:
            following = next(chars, "")
            current.append(following if following in (SEPARATOR, ESCAPE) else ch + following)
        elif ch == SEPARATOR:
            choices.append("".join(current))
            current = []
        else:
            current.append(ch)
    choices.append("".join(current))
    return check_choices([c.strip() for c in choices], limits)


def choice_key(choice: str) -> str:
    """A candidate as answers are compared (``normalize_answer``; its words when that leaves nothing, as for "a")."""
    return normalize_answer(choice) or " ".join(tokenize_words(choice))


def check_choices(choices: Sequence[str], limits: ChoiceLimits = CHOICE_LIMITS) -> list[str]:
    """``choices`` as a list if they can be scored, else ValueError (one line): at least 2 and at most
    ``max_choices`` strings, none blank or longer than ``max_choice_chars``, none given twice."""
    if not isinstance(choices, str) and hasattr(choices, "tolist"):  # a numpy array of strings
        choices = choices.tolist()
    if isinstance(choices, str) or not isinstance(choices, Sequence) or not all(isinstance(c, str) for c in choices):
        raise ValueError(f"choices must be a list of strings (or one string, separated by {SEPARATOR})")
    if len(choices) < 2:
        raise ValueError(
            f"give at least 2 choices, separated by {SEPARATOR} (write {ESCAPE + SEPARATOR} for a "
            f"{SEPARATOR} inside one), not {len(choices)}"
        )
    if len(choices) > limits.max_choices:
        raise ValueError(f"give at most {limits.max_choices} choices, not {len(choices)}")
    seen: dict[str, int] = {}
    for n, choice in enumerate(choices, 1):
        if any(ch in choice for ch in "\t\n\r\v\f"):
            raise ValueError(f"choice {n} of {len(choices)} holds a tab or a line break; give each choice on one line")
        if not tokenize_words(choice):
            raise ValueError(
                f"choice {n} of {len(choices)} has no words (letters or digits) the models can read"
                if choice.strip()
                else f"choice {n} of {len(choices)} is blank"
            )
        if len(choice) > limits.max_choice_chars:
            raise ValueError(f"choice {n} is too long ({len(choice)} characters; at most {limits.max_choice_chars})")
        key = choice_key(choice)
        if key in seen:
            raise ValueError(f"choices {seen[key]} and {n} are the same answer ({choice[:SHOWN]!r}); give each once")
        seen[key] = n
    return list(choices)


@torch.inference_mode()
def word_scores(decoder, features: torch.Tensor, max_length: int) -> torch.Tensor:
    """For image features ``(N, R, feature_dim)``, each caption word's highest log-probability ``(N, vocab)`` over
    the steps of the decoder's greedy caption (its ``<end>`` step included): the image's words, as the caption
    model sees them."""
    hyps = decode(decoder, features, DecodeConfig(method="greedy", max_length=max_length))
    seqs = [[Vocabulary.start_id, *h[0].tokens, Vocabulary.end_id] for h in hyps]
    tokens, lengths = pad_ids(seqs)
    steps = torch.log_softmax(decoder(features.float(), tokens, lengths - 1).float(), dim=-1)  # (sum(lengths - 1), V)
    return torch.stack([s.max(0).values for s in steps.split((lengths - 1).tolist())])  # (N, vocab)


class AnswerWords:
    """The VQA model's answers as sets of words, plurals folded onto the singular ("goats" is "goat"): which
    answers a candidate holds."""

    def __init__(self, answer_index: Mapping[str, int]):
        words = sorted({w for answer in answer_index for w in answer.split()})
        self.folded = {w: w for w in words}
        for w in words:
            self.folded.setdefault(plural(w), w)
            if plural(w) != w and plural(w) in answer_index:  # both forms are answers: the plural folds too
                self.folded[plural(w)] = w
        self.index = answer_index
        self.answers = [(frozenset(self.fold(a)), i) for a, i in answer_index.items() if a.split()]

    def fold(self, text: str) -> set[str]:
        return {self.folded.get(w, w) for w in text.split()}

    def held_by(self, choice: str) -> list[int]:
        """The indices of the answers all of whose words the candidate holds (and its own, as the empty answer)."""
        key = choice_key(choice)
        holds = self.fold(key)
        held = [i for words, i in self.answers if words <= holds]
        return held if held or key not in self.index else [self.index[key]]


def choice_features(
    choice: str,
    vqa_log_probs: torch.Tensor,
    answers: AnswerWords,
    words: torch.Tensor,
    vocab: Vocabulary,
    seen: Callable[[str], tuple[float, float]] | None = None,
) -> tuple[float, ...]:
    """The rule's six inputs for one candidate (log p_vqa or 0, out of vocabulary 0/1, w, u, c, n), in the order
    of :class:`ChoiceWeights`; w and u are 0 for a candidate that holds an answer, c and n without ``seen`` (see
    :func:`choice_probabilities`)."""
    concept = seen(choice) if seen is not None else (0.0, 0.0)
    held = answers.held_by(choice)
    if held:
        return float(vqa_log_probs[held].max()), 0.0, 0.0, 0.0, *concept
    tokens = tokenize_words(choice_key(choice))  # articles dropped: "a" is in every caption
    ids = [vocab.index.get(w, Vocabulary.unk_id) for w in tokens]
    return 0.0, 1.0, float(words[ids].mean()), sum(w not in vocab.index for w in tokens) / len(tokens), *concept


def choice_probabilities(
    choices: Sequence[str],
    vqa_log_probs: torch.Tensor,
    answers: AnswerWords,
    words: torch.Tensor,
    vocab: Vocabulary,
    weights: ChoiceWeights = SHIPPED,
    seen: Callable[[str], tuple[float, float]] | None = None,
) -> list[tuple[str, float]]:
    """(candidate, probability) for each of ``choices`` (already checked), best first; they sum to 1.
    ``vqa_log_probs`` ``(answers,)`` is the VQA model's log-softmax, ``words`` ``(vocab,)`` the image's
    :func:`word_scores`, ``seen`` the (c, n) of a candidate on this image
    (:meth:`captioner.concepts.SeenConcepts.features`; None: no concept detectors)."""
    x = torch.tensor([choice_features(c, vqa_log_probs, answers, words, vocab, seen) for c in choices])  # (K, 6)
    probs = torch.softmax(x @ weights.vector(), dim=0)  # (K,)
    return sorted(zip(choices, probs.tolist()), key=lambda cp: -cp[1])


@dataclass
class WordModel:
    """The caption decoder and its vocabulary, as the model of a candidate's words (see :func:`word_scores`)."""

    decoder: Any
    vocab: Vocabulary

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """:func:`word_scores` of image features ``(N, R, feature_dim)``: ``(N, vocab)``."""
        return word_scores(self.decoder, features, self.vocab.max_length)
