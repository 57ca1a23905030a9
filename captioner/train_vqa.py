"""Training the VQA model on cached image features, with checkpoints, ``--resume`` and best-on-validation.

:class:`VQATask` plugs VQA into the training loop it shares with captions (:mod:`captioner.training`):
the same feature cache, length-bucketed batches, cosine schedule, distributed setup and checkpoint
files, with ``best/`` (highest validation accuracy) and ``last/`` (optimizer and RNG state, so a
resumed run continues exactly where an uninterrupted one would be). It trains on one dataset or a mix, with one question
vocabulary and one answer vocabulary over all of them. Each dataset is validated on its own dev split
when it has one, else on held-out whole images (never single questions), and reported apart; the
mean accuracy over the datasets picks the best checkpoint.

The loss is soft cross-entropy: the targets of a question are the soft scores of its answers
(see :func:`soft_targets`), normalised to a distribution; a question none of whose answers is in
the answer vocabulary teaches nothing and is left out of training (but still counts, as wrong,
in validation).
"""
from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint import load_checkpoint
from .data import DatasetSpec, VQAExample, load_vqa_dataset, split_by_image, vqa_split_exists
from .encoder import ENCODERS, build_encoder
from .vqa_metrics import normalize_answer, question_score, vqa_report
from .features import batched, cached_features
from .training import (RunConfig, Task, fit, gather_features, named_specs, rank_zero_first, shape_keys, swap_left_right,
                       vocab_json, weighted_rows)
from .vocab import Vocabulary, pad_ids
from .vqa import ANSWERS_FILE, VQAConfig, VQAModel

# The settings that shape the model: a resumed run must be given the same ones.
MODEL_KEYS = shape_keys(VQAConfig, "vocab_size", "num_answers", "feature_dim")
ARCHITECTURE = ("encoder", *MODEL_KEYS)


@dataclass
class VQATrainConfig(RunConfig):
    """Everything a VQA training run depends on; saved beside the checkpoints.

    The model defaults were chosen on DAQUAR's by-image validation split: one LSTM layer and 512-d
    fused vectors (Antol et al. used two layers and 1024 on VQA, a hundred times more questions).
    """

    data: tuple[str, ...] = ("daquar:../shared/data/daquar", "coco:../shared/data/coco")
    out: str = "runs/vqa"
    flip_augment: bool = True
    max_length: int = 30
    epochs: int = 14
    batch_size: int = 64
    lr: float = 1e-3
    questions: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    top_answers: int = 1000
    # the model's shape: VQAConfig's defaults, defined there only
    embed_dim: int = VQAConfig.embed_dim
    hidden_dim: int = VQAConfig.hidden_dim
    num_layers: int = VQAConfig.num_layers
    fused_dim: int = VQAConfig.fused_dim
    mlp_dim: int = VQAConfig.mlp_dim
    fusion: str = VQAConfig.fusion
    use_image: bool = VQAConfig.use_image
    dropout: float = VQAConfig.dropout


# ---------------------------------------------------------------- answers and targets


def build_answer_vocab(examples: Iterable[VQAExample], top_k: int) -> list[str]:
    """The ``top_k`` most frequent answers (every human answer counts), most frequent first.

    Answers are counted in VQA's normalised form, which merges "two" with "2" and "a dog" with "dog"
    across datasets; each class is shown as its most frequent spelling ("chair, table", not "chair table").
    """
    counts, spellings = Counter(), defaultdict(Counter)
    for answer in (a.strip().lower() for e in examples for a in e.answers):
        counts[normalize_answer(answer)] += 1
        spellings[normalize_answer(answer)][answer] += 1
    top = sorted(counts, key=lambda a: (-counts[a], a))[:top_k]
    return [min(spellings[key], key=lambda s: (-spellings[key][s], s)) for key in top]


def answer_index(answers: Sequence[str]) -> dict[str, int]:
    """Class of each answer in normalised form (see :func:`build_answer_vocab`)."""
    return {normalize_answer(a): i for i, a in enumerate(answers)}


def soft_targets(answers: Sequence[str], index: dict[str, int]) -> dict[int, float]:
    """Score of each vocabulary answer a human gave: the accuracy that predicting it would earn.

    With ten VQA answers that is 0.3, 0.6, 0.9 or 1 for an answer given by 1, 2, 3 or more humans;
    with fewer than three answers (exact match) every listed answer scores 1.
    """
    out = {}
    for key in {normalize_answer(a) for a in answers}:
        if key in index:
            score = question_score(key, list(answers))
            if score > 0:
                out[index[key]] = score
    return out


# ---------------------------------------------------------------- data


@dataclass
class VQASet:
    """Questions as token ids and soft targets, aligned with rows of image features."""

    examples: list[VQAExample]
    features: np.ndarray  # (images, feature_dim), possibly a memory map
    flipped: np.ndarray | None  # mirrored-image features, or None
    image_index: np.ndarray  # (questions,) row into ``features``
    tokens: list[list[int]]
    flipped_tokens: list[list[int]]  # the same questions with "left" and "right" swapped, for mirrored images
    targets: list[dict[int, float]]


def build_vqa_set(examples: list[VQAExample], features: np.ndarray, flipped: np.ndarray | None, rows: dict[Path, int],
                  vocab: Vocabulary, index: dict[str, int]) -> VQASet:
    # A question with no words at all is read as a single <unk>, so the LSTM always gets an input.
    tokens = [vocab.encode(e.question, add_markers=False) or [vocab.unk_id] for e in examples]
    return VQASet(examples, features, flipped, np.array([rows[e.path] for e in examples], dtype=np.int64), tokens,
                  [swap_left_right(t, vocab) for t in tokens], [soft_targets(e.answers, index)
                                                                  for e in examples])


def collate(data: VQASet, rows: Sequence[int], num_answers: int, flips: Sequence[bool] | None = None):
    """Features ``(B, D)``, padded question ids ``(B, T)``, lengths ``(B,)`` and soft targets ``(B, answers)``.

    A row with ``flips[i]`` gets the mirrored image and its question with left and right swapped.
    """
    rows = list(rows)
    flips = flips if flips is not None else [False] * len(rows)
    tokens, lengths = pad_ids([(data.flipped_tokens if f else data.tokens)[r] for r, f in zip(rows, flips)])
    targets = torch.zeros(len(rows), num_answers)
    for i, r in enumerate(rows):
        for a, score in data.targets[r].items():
            targets[i, a] = score
    return gather_features(data.features, data.flipped, data.image_index[rows], flips), tokens, lengths, targets


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against targets normalised per row; rows without targets are skipped."""
    mass = targets.sum(dim=1)
    keep = mass > 0
    if not keep.any():
        return logits.sum() * 0.0
    weights = targets[keep] / mass[keep, None]
    return -(weights * torch.log_softmax(logits[keep], dim=-1)).sum(dim=1).mean()


@torch.no_grad()
def evaluate(model: VQAModel, data: VQASet, answers: list[str], batch_size: int = 512) -> dict[str, float]:
    """Validation loss and accuracy of the top answer (per question, the soft VQA accuracy or exact match)."""
    model.eval()
    total, count, predictions = 0.0, 0, {}
    for rows in batched(range(len(data.examples)), batch_size):
        feats, tokens, lengths, targets = collate(data, rows, len(answers))
        logits = model(feats, tokens, lengths)
        with_targets = int((targets.sum(dim=1) > 0).sum())
        total += soft_cross_entropy(logits, targets).item() * with_targets
        count += with_targets
        for r, best in zip(rows, logits.argmax(dim=-1).tolist()):
            predictions[data.examples[r].question_id] = answers[best]
    report = vqa_report(predictions, {e.question_id: e.answers for e in data.examples})
    return {"loss": total / max(count, 1), "accuracy": report["accuracy"]}


def validate(model: VQAModel, val_sets: dict[str, VQASet], answers: list[str]) -> dict:
    """Each dataset's validation loss and accuracy; ``accuracy`` is their mean, so each dataset counts
    alike whatever its size, and it picks the best checkpoint."""
    per_dataset = {name: evaluate(model, data, answers) for name, data in val_sets.items()}
    return {"accuracy": float(np.mean([d["accuracy"] for d in per_dataset.values()])), "datasets": per_dataset}


# ---------------------------------------------------------------- the task


def model_config(cfg: VQATrainConfig, model: VQAConfig, extra: dict | None = None) -> dict:
    """The JSON config shipped with VQA weights: what to build and how it was trained."""
    return {"task": "vqa", "encoder": cfg.encoder, "preprocessing": ENCODERS[cfg.encoder].preprocessing.to_dict(),
            "model": asdict(model), "training": asdict(cfg), **(extra or {})}


def load_splits(cfg: VQATrainConfig) -> list[tuple[str, DatasetSpec, list[VQAExample], list[VQAExample]]]:
    """Each dataset of the mix as (name, spec, training questions, validation questions). Validation is the
    dataset's ``val_split`` when it has one, else ``val_fraction`` of its training images, held out."""
    out = []
    for name, spec in named_specs(cfg.data):
        train = load_vqa_dataset(spec.name, spec.root, cfg.train_split, cfg.questions, cfg.annotations)
        if cfg.val_split and vqa_split_exists(spec.name, spec.root, cfg.val_split):
            val = load_vqa_dataset(spec.name, spec.root, cfg.val_split)
        else:
            train, val = split_by_image(train, cfg.val_fraction, cfg.split_seed)
        out.append((name, spec, train, val))
    return out


def image_features(encoder_name: str, encoder_weights: str | None, examples: Iterable[VQAExample],
                   cache_dir: str | Path, flip: bool = False) -> tuple[np.ndarray, np.ndarray | None, dict[Path, int]]:
    """Cached features of every image the questions refer to (and of the mirrored images when ``flip``),
    and each image path's row."""
    paths = sorted({e.path for e in examples})
    encoder = build_encoder(encoder_name, encoder_weights)
    feats = cached_features(encoder, paths, cache_dir, desc="image features")
    flipped = cached_features(encoder, paths, cache_dir, flip=True, desc="mirrored image features") if flip else None
    return feats, flipped, {p: i for i, p in enumerate(paths)}


class VQATask(Task):
    """VQA as a :class:`~captioner.training.Task`: soft cross-entropy over the answer vocabulary, on batches of
    similar-length questions, with mirrored images (and "left"/"right" swapped) when ``flip_augment``."""

    architecture = ARCHITECTURE

    def __init__(self, cfg: VQATrainConfig):
        self.cfg = cfg

    def build(self, last: Path | None, rank: int, world: int) -> None:
        cfg = self.cfg
        mix = load_splits(cfg)
        train_examples = [e for _, _, train, _ in mix for e in train]
        val_examples = [e for _, _, _, val in mix for e in val]
        if not train_examples:
            raise ValueError("no training questions")
        if last is not None:
            self.vocab = Vocabulary.load(last / "vocab.json")
            self.answers = json.loads((last / ANSWERS_FILE).read_text())
        else:
            self.vocab = Vocabulary.build((e.question for e in train_examples), cfg.min_count, cfg.max_length)
            self.answers = build_answer_vocab(train_examples, cfg.top_answers)
        index = answer_index(self.answers)
        feats, flipped, rows = rank_zero_first(rank, world, lambda: image_features(
            cfg.encoder, cfg.encoder_weights, train_examples + val_examples, cfg.cache_dir, cfg.flip_augment))
        self.train_set = build_vqa_set(train_examples, feats, flipped, rows, self.vocab, index)
        self.val_sets = {name: build_vqa_set(val, feats, None, rows, self.vocab, index)
                         for name, _, _, val in mix if val}
        self.trainable = [i for i, t in enumerate(self.train_set.targets) if t]
        if not self.trainable:
            raise ValueError("no training question has an answer in the answer vocabulary")
        example_dataset = np.repeat(np.arange(len(mix)), [len(train) for _, _, train, _ in mix])
        self.trainable_dataset = example_dataset[self.trainable]
        self.mix_weights = [spec.weight for _, spec, _, _ in mix]
        self.lengths = [len(t) for t in self.train_set.tokens]
        self._build_model(last, feats.shape[-1])
        self.extra_files = {"vocab.json": vocab_json(self.vocab), ANSWERS_FILE: self.answers}

    def _build_model(self, last: Path | None, feature_dim: int) -> None:
        """The model of the flags, or on resume of ``last`` (whose flags were checked to be the same)."""
        if last is not None:
            weights, config = load_checkpoint(last)
            self.mcfg = VQAConfig(**config["model"])
        else:
            self.mcfg = VQAConfig(len(self.vocab), len(self.answers), feature_dim,
                                  **{k: getattr(self.cfg, k) for k in MODEL_KEYS})
        self.model = VQAModel(self.mcfg)
        if last is not None:
            self.model.load_state_dict(weights)

    def train_rows(self, generator: torch.Generator) -> list[int]:
        return [self.trainable[i] for i in weighted_rows(self.trainable_dataset, self.mix_weights, generator)]

    def loss(self, net: nn.Module, batch: list[int], epoch: int, optimizer: torch.optim.Optimizer
             ) -> tuple[torch.Tensor, float]:
        feats, tokens, lengths, targets = collate(self.train_set, batch, len(self.answers), self.batch_flips(batch))
        loss = soft_cross_entropy(net(feats, tokens, lengths), targets)
        return loss, loss.item()

    def epoch_scores(self, epoch: int, started: float, train_figure: float) -> dict:
        scores = validate(self.model, self.val_sets, self.answers) if self.val_sets else {}
        scores.update(epoch=epoch, train_loss=train_figure, seconds=round(time.time() - started, 1))
        return scores

    def improved(self, scores: dict, best: dict | None) -> bool:
        return best is None or not self.val_sets or scores["accuracy"] > best["accuracy"]

    def report(self, epoch: int, scores: dict, improved: bool) -> str:
        per_dataset = "".join(f", {name} val loss {d['loss']:.3f} accuracy {d['accuracy']:.4f}"
                              for name, d in scores.get("datasets", {}).items())
        mean = f", mean accuracy {scores['accuracy']:.4f}" if len(self.val_sets) > 1 else ""
        return f"epoch {epoch}: train loss {scores['train_loss']:.3f}{per_dataset}{mean}" + (
            " (best)" if improved and self.val_sets else "")

    def config(self, extra: dict | None = None) -> dict:
        return model_config(self.cfg, self.mcfg, extra)


def train_vqa(cfg: VQATrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train a VQA model on one dataset or a mix; returns the best validation scores. Writes ``best/`` and
    ``last/`` under ``cfg.out``, refusing to replace a finished run there unless ``overwrite``.

    With no validation questions (``val_fraction=0`` and no ``val_split``) ``best/`` is the last epoch.
    """
    return fit(VQATask(cfg), resume, overwrite)
