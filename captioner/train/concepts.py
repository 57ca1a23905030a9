"""Training the concept detectors (:mod:`captioner.concepts`) from captions, on cached region features.

:class:`ConceptTask` plugs them into the training loop that captions and VQA share (:mod:`.loop`): the same feature
cache (the region grids), checkpoints, ``--resume`` and best-on-validation. The vocabulary is mined from the
training captions (:func:`mine_vocab`); an image's labels are the concepts any of its captions names. A share of
the training images is held out (``--val-fraction``), never the datasets' dev splits: it picks the best epoch by
mean average precision, and calibrates the existence rule's threshold (:func:`calibrate_existence`), so that dev
stays unseen until the benchmark scores it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import save_checkpoint
from ..concepts import (
    CONCEPTS_FILE,
    ConceptConfig,
    ConceptDetector,
    Concepts,
    ConceptVocab,
    noisy_or_loss,
    object_forms,
)
from ..data.captions import ImageCaptions
from ..data.datasets import CAPTION_DATASETS, load_caption_dataset
from ..data.vqa import held_out_images
from ..encoder import ENCODERS, build_encoder
from ..features import cached_features
from ..io import read_json
from ..lexicon import COCO_OBJECTS, FUNCTION_WORDS, plural
from ..metrics.concepts import mean_average_precision, pope_items, yes_no_scores
from ..settings import like, setting
from ..vocab import tokenize_words
from .loop import SEED_MAX, Batch, Phase, RunConfig, Task, fit, shape_keys
from .preflight import new_or_resumed
from .processes import rank_zero_first

MODEL_KEYS = shape_keys(ConceptConfig, "num_concepts", "feature_dim")


@dataclass
class ConceptTrainConfig(RunConfig):
    """Everything a concept-detector run depends on; saved beside the checkpoints."""

    FORMATS: ClassVar[tuple[str, ...]] = CAPTION_DATASETS
    EXAMPLE: ClassVar[str] = "--data flickr8k:data/flickr8k --data coco:data/coco"
    DESCRIPTION: ClassVar[str] = (
        "Train concept detectors (objects, colours, counts, actions, scenes: the words captions use most) by "
        "multiple-instance learning over the encoder's region grid (noisy-OR), from the captions of the training "
        "split only. A share of the training images is held out to pick the best epoch (mean average precision) "
        "and to calibrate the existence rule. Writes OUT/best and OUT/last (for --resume)."
    )
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("encoder", "concepts", "min_images", *MODEL_KEYS)

    out: str = like(RunConfig, "out", default="runs/concepts")
    epochs: int = like(RunConfig, "epochs", default=10)
    batch_size: int = like(RunConfig, "batch_size", default=64, help="images per batch and process")
    lr: float = like(RunConfig, "lr", default=1e-3)
    concepts: int = setting(1000, "the vocabulary: this many words, those the most images' captions use", low=1)
    min_images: int = setting(5, "a concept needs the captions of at least this many training images", low=1)
    val_fraction: float = setting(
        0.1, "share of the training images held out to pick the best epoch and calibrate", above=0, below=1
    )
    split_seed: int = setting(0, "seed of the held-out images", low=0, high=SEED_MAX)
    hidden_dim: int = like(ConceptConfig, "hidden_dim")
    dropout: float = like(ConceptConfig, "dropout")


# ---------------------------------------------------------------- the vocabulary and the labels


def _phrases(tokens: list[str], objects: dict[str, str]) -> list[str]:
    """A caption's words, and its two-word object names ("hot dog", "cell phone")."""
    pairs = [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
    return tokens + [p for p in pairs if p in objects]


def mine_vocab(captions: Sequence[Sequence[str]], size: int, min_images: int) -> ConceptVocab:
    """The ``size`` words (singular) that the captions of the most images use, at least ``min_images``, function
    words aside; plus every COCO object named by that many, which also each of its synonyms names."""
    objects = object_forms()
    named = [{p for c in caps for p in _phrases(tokenize_words(c), objects)} for caps in captions]  # per image
    images = Counter(p for phrases in named for p in phrases)  # images whose captions use each
    singular = {plural(w): w for w in images if plural(w) != w and plural(w) in images}  # "dogs" -> "dog"
    by_word = Counter()
    for word, n in images.items():
        if word not in FUNCTION_WORDS and " " not in word:
            by_word[singular.get(word, word)] += n  # a word and its plural: an upper bound, enough to rank by
    words = [w for w, n in by_word.most_common() if n >= min_images][:size]
    by_category = Counter(c for phrases in named for c in {objects[p] for p in phrases if p in objects})
    categories = [c for c in COCO_OBJECTS if by_category[c] >= min_images and c not in words]
    forms: dict[str, list[str]] = {}
    for w in words:
        for form in (w, plural(w)):
            forms.setdefault(form, []).append(w)
    for form, word in singular.items():
        if word in words and word not in forms.get(form, []):
            forms.setdefault(form, []).append(word)
    for form, category in objects.items():
        if category in words or category in categories:
            forms.setdefault(form, [])
            if category not in forms[form]:
                forms[form].append(category)
    return ConceptVocab(words + categories, forms)


def concept_labels(images: Sequence[ImageCaptions], vocab: ConceptVocab) -> np.ndarray:
    """``(N, K)`` 0/1: which concepts the captions of each image name."""
    labels = np.zeros((len(images), len(vocab.words)), np.float32)
    for i, item in enumerate(images):
        for concept in set().union(*(vocab.concepts_in(c) for c in item.captions)):
            labels[i, vocab.index[concept]] = 1
    return labels


def load_images(cfg: ConceptTrainConfig, split: str) -> list[tuple[str, list[ImageCaptions]]]:
    """Each dataset of the run's mix with its images (and captions) of ``split``."""
    return [(name, load_caption_dataset(spec.name, spec.root, split, cfg.annotations)) for name, spec in cfg.datasets()]


def region_features(
    encoder: str, encoder_weights: str | None, cache_dir: str | None, images: Sequence[ImageCaptions], name: str
) -> np.ndarray:
    """The region grids ``(N, R, D)`` of ``images``, cached (:func:`captioner.features.cached_features`)."""
    built = build_encoder(encoder, encoder_weights)
    return cached_features(built, [i.path for i in images], cache_dir, regions=True, desc=f"{name} regions")


@torch.inference_mode()
def detect(model: ConceptDetector, features: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Image-level probabilities ``(N, K)`` of cached region features, a batch at a time."""
    model.eval()
    out = [
        model.probabilities(torch.from_numpy(np.array(features[i : i + batch_size])).float())[0].numpy()
        for i in range(0, len(features), batch_size)
    ]
    return np.concatenate(out)


# ---------------------------------------------------------------- the existence rule's calibration


def object_presence(images: Sequence[ImageCaptions], vocab: ConceptVocab, min_captions: int = 1) -> np.ndarray:
    """``(N, K)``: 1 where at least ``min_captions`` captions of the image name the COCO object concept, 0 where
    none does, -1 in between (unknown) and for concepts that are no COCO object."""
    out = np.full((len(images), len(vocab.words)), -1, np.int8)
    columns = [vocab.index[c] for c in COCO_OBJECTS if c in vocab.index]
    out[:, columns] = 0
    for i, item in enumerate(images):
        named = Counter(c for caption in item.captions for c in vocab.concepts_in(caption))
        for c, n in named.items():
            if c in COCO_OBJECTS:
                out[i, vocab.index[c]] = 1 if n >= min_captions else -1
    return out


def calibrate_existence(probabilities: np.ndarray, presence: np.ndarray, steps: int = 50) -> dict:
    """Platt scaling of the detectors' probabilities into P(present) for "is there a X?", fitted on held-out
    images with present and absent objects weighed alike (POPE asks as many of each, and people ask about what
    they think is there): P = sigmoid(slope * logit(p) + intercept), fitted by Newton's method. ``threshold`` is
    the detector probability where P = 1/2."""
    known = presence >= 0
    p, present = probabilities[known].astype(np.float64), presence[known].astype(bool)
    if not present.any() or present.all():
        raise ValueError("calibrating the existence rule needs both present and absent objects")
    x = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1 - 1e-6))
    weight = np.where(present, 0.5 / present.sum(), 0.5 / (~present).sum())
    X, theta = np.stack([x, np.ones_like(x)], 1), np.array([1.0, 0.0])

    def loss(t: np.ndarray) -> float:  # the weighted cross-entropy, from the logits without overflow
        z = X @ t
        return float((weight * (np.logaddexp(0, z) - present * z)).sum())

    for _ in range(steps):  # Newton's method, halving a step until it lowers the loss
        q = 1 / (1 + np.exp(-np.clip(X @ theta, -500, 500)))
        gradient = X.T @ (weight * (q - present))
        hessian = (X * (weight * q * (1 - q))[:, None]).T @ X + 1e-9 * np.eye(2)
        step, before = np.linalg.solve(hessian, gradient), loss(theta)
        while loss(theta - step) > before and np.abs(step).max() > 1e-12:
            step = step / 2
        theta = theta - step
    slope, intercept = float(theta[0]), float(theta[1])
    threshold = float(1 / (1 + np.exp(intercept / slope)))
    accuracy = float(((p >= threshold) == present).mean())
    return {"slope": slope, "intercept": intercept, "threshold": threshold, "held_out_accuracy": accuracy}


# ---------------------------------------------------------------- the task


class ConceptTask(Task):
    """Concept detection as a :class:`~captioner.train.loop.Task`: the noisy-OR's cross-entropy against the words
    of each image's captions, on shuffled batches of images."""

    best_by = "mAP"

    def __init__(self, cfg: ConceptTrainConfig, last: Path | None, rank: int, world: int):
        self.cfg = cfg
        mix = load_images(cfg, cfg.train_split)
        images = [item for _, items in mix for item in items]
        if not images:
            raise ValueError("no training images")
        held = held_out_images((str(i.path) for i in images), cfg.val_fraction, cfg.split_seed)
        self.vocab = (
            ConceptVocab.from_json(read_json(last / CONCEPTS_FILE))
            if last is not None
            else mine_vocab([i.captions for i in images if str(i.path) not in held], cfg.concepts, cfg.min_images)
        )
        feats = rank_zero_first(
            rank,
            world,
            lambda: [
                region_features(cfg.encoder, cfg.encoder_weights, cfg.cache_dir, items, name) for name, items in mix
            ],
        )
        rows = [(d, r) for d, (_, items) in enumerate(mix) for r in range(len(items))]
        self.features = feats
        self.train_rows = [row for row, item in zip(rows, images) if str(item.path) not in held]
        self.val_rows = [row for row, item in zip(rows, images) if str(item.path) in held]
        self.val_images = [item for item in images if str(item.path) in held]
        self.labels = concept_labels(images, self.vocab)
        self.label_row = {row: i for i, row in enumerate(rows)}
        shape = lambda: ConceptConfig(  # noqa: E731
            len(self.vocab.words), feats[0].shape[-1], **{k: getattr(cfg, k) for k in MODEL_KEYS}
        )
        self.config, self.model = new_or_resumed(ConceptDetector, ConceptConfig, last, shape, "the concept detectors")

    def _gather(self, rows: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        feats = np.stack([self.features[d][r] for d, r in rows])
        labels = self.labels[[self.label_row[row] for row in rows]]
        return torch.from_numpy(feats).float(), torch.from_numpy(labels)

    def phases(self) -> list[Phase]:
        return [Phase(self.cfg.epochs, self._batches, self._loss)]

    def _batches(self, generator: torch.Generator) -> list[Batch]:
        order = torch.randperm(len(self.train_rows), generator=generator).tolist()
        size = self.cfg.batch_size
        return [Batch(order[i : i + size]) for i in range(0, len(order), size)]

    def _loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        feats, labels = self._gather([self.train_rows[i] for i in batch.rows])
        loss = noisy_or_loss(net(feats)[0], labels)
        return loss, loss.item()

    def _val_probabilities(self) -> np.ndarray:
        out = []
        for d in range(len(self.features)):
            rows = [r for dd, r in self.val_rows if dd == d]
            if rows:
                out.append(detect(self.model, self.features[d][rows]))
        self.model.train()
        return np.concatenate(out)

    def validate(self) -> dict:
        probabilities = self._val_probabilities()
        labels = self.labels[[self.label_row[row] for row in self.val_rows]]
        return mean_average_precision(probabilities, labels, self.vocab.classes)

    def report(self, scores: dict) -> str:
        classes = ", ".join(f"{c} {s['mAP']:.3f}" for c, s in scores.get("by_class", {}).items())
        return f"held-out mAP {scores['mAP']:.4f} ({classes})" if scores else ""

    def save(self, folder: Path, extra: dict | None = None) -> None:
        presence = object_presence(self.val_images, self.vocab)
        if not (presence == 1).any() or not (presence == 0).any():  # no COCO object to calibrate on: every concept
            presence = self.labels[[self.label_row[row] for row in self.val_rows]].astype(np.int8)
        existence = calibrate_existence(self._val_probabilities(), presence)
        config = {
            "task": "concepts",
            "encoder": self.cfg.encoder,
            "preprocessing": ENCODERS[self.cfg.encoder].preprocessing.to_dict(),
            "model": asdict(self.config),
            "training": asdict(self.cfg),
            "existence": existence,
            **(extra or {}),
        }
        save_checkpoint(folder, self.model, config, {CONCEPTS_FILE: self.vocab.to_json()})


def train_concepts(cfg: ConceptTrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train concept detectors on a mix of caption datasets; returns the best held-out scores."""
    return fit(ConceptTask, cfg, resume, overwrite)


def evaluate_concepts(concepts: Concepts, images: Sequence[ImageCaptions], cache_dir: str | None = None) -> dict:
    """Scores of trained detectors on captioned images never trained on (a dev split): mean average precision
    against the concepts their captions name, by word class, and the existence rule on POPE-style questions read
    from the captions (:func:`captioner.metrics.concepts.pope_items`)."""
    feats = region_features(concepts.encoder, None, cache_dir, images, "dev")
    probabilities = detect(concepts.model, feats)
    scores = mean_average_precision(probabilities, concept_labels(images, concepts.vocab), concepts.vocab.classes)
    items = [
        (i, o, present) for i, o, present in pope_items([im.captions for im in images]) if o in concepts.vocab.index
    ]
    threshold = concepts.existence["threshold"]
    said = [probabilities[i, concepts.vocab.index[o]] >= threshold for i, o, _ in items]
    if items:  # captions that name COCO objects
        scores["pope"] = yes_no_scores(said, [present for _, _, present in items])
    return scores
