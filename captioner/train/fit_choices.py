"""Fitting the multiple-choice rule of VQA weights (``captioner fit-choices``).

The rule (:mod:`captioner.choices`) scores a candidate answer with six weights. They are fitted together on
4-way items built from *training* questions, never dev: each question's most common human answer, and 3
distractors drawn (seeded) from the most common answers to other questions of the same dataset with the same
first two words (any other question's when fewer than 3 remain), none of them an answer a human gave to the
question. The fit is a conditional logit (the right candidate's mean log-probability, L-BFGS, a small L2).
``benchmarks/bench_vqa.py`` scores the recorded rule on the same kind of items built from dev questions.

    captioner fit-choices --data coco:DIR --weights weights     # writes weights/vqa/config.json's "choices"
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch

from ..answers import normalize_answer
from ..choices import ChoiceWeights, choice_features
from ..data.datasets import VQA_DATASETS, DatasetSpec, load_vqa_dataset
from ..data.vqa import VQAExample
from ..settings import check, setting
from ..vocab import tokenize_words

CANDIDATES = 4  # the right answer and 3 distractors


@dataclass
class FitChoicesConfig:
    """The settings of ``captioner fit-choices``."""

    data: tuple[str, ...] = setting(
        (),
        f"a question dataset as FORMAT:FOLDER whose --split questions the rule is "
        f"fitted on, FORMAT one of {', '.join(VQA_DATASETS)}; required",
        metavar="FORMAT:FOLDER",
    )
    weights: str | None = setting(
        None,
        "a weights entry name, or a folder holding vqa/ and caption/ weights on one encoder; none: the shipped weights",
    )
    split: str = setting("train", "the split whose questions the rule is fitted on (never the one it is scored on)")
    seed: int = setting(0, "random seed of the distractors drawn", low=0, high=2**32 - 1)
    write: bool = setting(
        True, 'record the fitted rule in the VQA weights\' config.json "choices" (else only print it)'
    )

    def __post_init__(self) -> None:
        check(self)
        if not self.data:
            raise ValueError(
                f"give the questions to fit on with --data FORMAT:FOLDER (formats: {', '.join(VQA_DATASETS)})"
            )


def _opening(question: str) -> str:
    return " ".join(tokenize_words(question)[:2])


def four_way(examples: Sequence[VQAExample], seed: int = 0) -> list[list[str]]:
    """Each question's candidates: its most common answer first, then 3 distractors (see the module docstring)."""
    right = [Counter(normalize_answer(a) for a in e.answers).most_common(1)[0][0] for e in examples]
    groups = defaultdict(set)
    for e, answer in zip(examples, right):
        groups[_opening(e.question)].add(answer)
    rng, everything = random.Random(seed), set(right)
    items = []
    for e, answer in zip(examples, right):
        given = {normalize_answer(a) for a in e.answers}
        pool = sorted(groups[_opening(e.question)] - given)
        if len(pool) < CANDIDATES - 1:
            pool += sorted(everything - given - set(pool))
        items.append([answer, *rng.sample(pool, CANDIDATES - 1)])
    return items


def choice_items(model, examples: Sequence[VQAExample], seed: int = 0) -> list[torch.Tensor]:
    """The rule's inputs ``(4, 6)`` of the 4-way item of each of ``examples`` that ``model`` (a
    :class:`captioner.pipeline.VQAPredictor` with its caption weights) can read, the right candidate first."""
    examples = [e for e in examples if len(tokenize_words(e.question)) <= model.vocab.max_length]
    by_image = defaultdict(list)
    for e, candidates in zip(examples, four_way(examples, seed)):
        by_image[e.path].append((e, candidates))
    items = []
    for path, pairs in by_image.items():
        features = model.preprocess([path])
        log_probs = model.forward(
            features.expand(len(pairs), *features.shape[1:]), [e.question for e, _ in pairs], log=True
        )
        words, seen = model.words.scores(features)[0], model.seen(features)
        items += [
            torch.tensor(
                [choice_features(c, lp, model.answer_words, words, model.words.vocab, seen) for c in candidates]
            )
            for (_, candidates), lp in zip(pairs, log_probs)
        ]
    return items


def fit_choice_weights(items: Sequence[torch.Tensor], l2: float = 1e-3) -> ChoiceWeights:
    """The weights that maximise the mean log-probability of the right candidate, given each item's
    :func:`captioner.choices.choice_features` ``(K, 6)`` with the right candidate first (a conditional logit,
    L-BFGS, a small L2). Inputs that are 0 throughout (no concepts) get weight 0."""
    x = torch.stack(list(items))  # (N, K, 6)
    w = torch.zeros(x.shape[-1], requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=200)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = -torch.log_softmax(x @ w, dim=-1)[:, 0].mean() + l2 * (w**2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    return ChoiceWeights(*(round(v, 3) for v in w.detach().tolist()))


def dataset_items(model, data: Sequence[str], split: str, seed: int = 0) -> list[torch.Tensor]:
    """:func:`choice_items` of the ``split`` questions of each ``FORMAT:FOLDER`` dataset of ``data`` (distractors
    drawn within each dataset)."""
    items = []
    for spec in map(DatasetSpec.parse, data):
        items += choice_items(model, load_vqa_dataset(spec.name, spec.root, split), seed)
    if not items:
        raise ValueError(f"no {split} questions to fit the rule on in {', '.join(data)}")
    return items


def fit_choices(cfg: FitChoicesConfig) -> tuple[ChoiceWeights, int]:
    """The rule fitted for ``cfg.weights`` on ``cfg.data``'s questions (fp32), and how many items it was fitted on."""
    from ..pipeline import VQAPredictor

    model = VQAPredictor.from_pretrained(cfg.weights, precision="fp32", words=True)
    items = dataset_items(model, cfg.data, cfg.split, cfg.seed)
    return fit_choice_weights(items), len(items)
