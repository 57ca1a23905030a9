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

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..answers import answer_index, normalize_answer
from ..checkpoint import save_checkpoint
from ..concepts import Concepts
from ..data.datasets import TRAIN_ONLY, VQA_DATASETS, DatasetSpec, load_vqa_dataset, vqa_split_exists
from ..data.vqa import VQAExample, split_by_image
from ..encoder import ENCODERS, build_encoder
from ..features import batched, cached_features
from ..io import read_json, write_json
from ..metrics.vqa import question_score, vqa_report
from ..settings import like, setting
from ..vocab import SPECIALS, VOCAB_FILE, Vocabulary, pad_ids
from ..vqa import ANSWERS_FILE, VQAConfig, VQAModel
from .concepts import detect
from .loop import (
    SEED_MAX,
    Batch,
    Phase,
    RunConfig,
    Task,
    bucketed_batches,
    fit,
    gather_features,
    shape_keys,
    swap_left_right,
    weighted_rows,
)
from .preflight import check_vocabulary, new_or_resumed
from .processes import rank_zero_first

MODEL_KEYS = shape_keys(
    VQAConfig, "vocab_size", "num_answers", "feature_dim", "concept_dim"
)  # the model settings a run sets


@dataclass
class VQATrainConfig(RunConfig):
    """Everything a VQA training run depends on; saved beside the checkpoints. The model's settings are
    :class:`VQAConfig`'s (default, range and help defined there only); the shared ones :class:`RunConfig`'s.

    The model defaults were chosen on DAQUAR's by-image validation split: one LSTM layer and 512-d
    fused vectors (Antol et al. used two layers and 1024 on VQA, a hundred times more questions).
    """

    FORMATS: ClassVar[tuple[str, ...]] = VQA_DATASETS
    FOLDERLESS: ClassVar[tuple[str, ...]] = ("easy-vqa",)
    EXAMPLE: ClassVar[str] = "--data daquar:data/daquar --data coco:data/coco:0.5 --data easy-vqa"
    DESCRIPTION: ClassVar[str] = (
        "Train the VQA model (LSTM question encoder, normalised image features, concatenated, MLP over "
        "the top answers) on cached encoder features, on one dataset or a mix (one question and one answer "
        "vocabulary over all of them). Each dataset is validated on its --val-split when it has one, else on "
        "held-out whole images (--val-fraction), and reported apart; questions with three or more human answers "
        "are scored by the soft VQA accuracy, others by exact match. Writes OUT/best (best mean validation "
        "accuracy over the datasets; the last epoch when there is no validation) and OUT/last (for --resume). "
        "--no-use-image trains the question-only baseline."
    )
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("encoder", "concepts", *MODEL_KEYS)

    data: tuple[str, ...] = like(
        RunConfig,
        "data",
        help=(
            "a dataset as FORMAT:FOLDER[:WEIGHT], FORMAT one of daquar, coco (qa_<split>.jsonl), vqa2, easy-vqa (no "
            "FOLDER), generated (qa_train.jsonl from captioner questions; trained on, never validated) or "
            "imagefolder (your images and a metadata.csv of file_name,question,answer); WEIGHT (at most 100) scales "
            "how often its questions are drawn per epoch (default 1)"
        ),
    )
    annotations: str | None = like(
        RunConfig, "annotations", help=("vqa2: the annotations JSON of the training split (None: the dataset's own)")
    )
    val_split: str = like(
        RunConfig,
        "val_split",
        help=("validate each dataset on this split where it has one ('': always hold out images)"),
    )
    out: str = like(RunConfig, "out", default="runs/vqa")
    flip_augment: bool = like(RunConfig, "flip_augment", default=True)
    max_length: int = like(RunConfig, "max_length", default=30, help="longest question in words (longer ones are cut)")
    epochs: int = like(RunConfig, "epochs", default=14)
    batch_size: int = like(RunConfig, "batch_size", default=64, help="questions per batch and process")
    lr: float = like(RunConfig, "lr", default=1e-3)
    questions: str | None = setting(None, "vqa2: the questions JSON of the training split (None: the dataset's own)")
    val_fraction: float = setting(
        0.2,
        "fraction of training images held out for validation, for datasets without --val-split (0: train on all)",
        low=0,
        below=1,
    )
    split_seed: int = setting(0, "seed of the image split", low=0, high=SEED_MAX)
    top_answers: int = setting(1000, "answer vocabulary: this many most frequent answers", low=1, high=100_000)
    concepts: str | None = setting(
        None,
        "a folder of concept weights (captioner concepts train) whose probabilities the model also reads, beside "
        "the image vector; ship them as concepts/ beside vqa/ (None: the image vector alone)",
    )
    embed_dim: int = like(VQAConfig, "embed_dim")
    hidden_dim: int = like(VQAConfig, "hidden_dim")
    num_layers: int = like(VQAConfig, "num_layers")
    cell: str = like(VQAConfig, "cell")
    fused_dim: int = like(VQAConfig, "fused_dim")
    mlp_dim: int = like(VQAConfig, "mlp_dim")
    fusion: str = like(VQAConfig, "fusion")
    use_image: bool = like(VQAConfig, "use_image")
    dropout: float = like(VQAConfig, "dropout")


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
    concepts: np.ndarray | None = None  # (images, concepts): the detectors' probabilities per image row, or None


def build_vqa_set(
    examples: list[VQAExample],
    features: np.ndarray,
    flipped: np.ndarray | None,
    rows: dict[Path, int],
    vocab: Vocabulary,
    index: dict[str, int],
    concepts: np.ndarray | None = None,
) -> VQASet:
    # A question with no words at all is read as a single <unk>, so the LSTM always gets an input.
    tokens = [vocab.encode(e.question, add_markers=False) or [vocab.unk_id] for e in examples]
    return VQASet(
        examples,
        features,
        flipped,
        np.array([rows[e.path] for e in examples], dtype=np.int64),
        tokens,
        [swap_left_right(t, vocab) for t in tokens],
        [soft_targets(e.answers, index) for e in examples],
        concepts,
    )


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


def batch_concepts(data: VQASet, rows: Sequence[int]) -> torch.Tensor | None:
    """The concept probabilities ``(B, concepts)`` of the rows' images, or None when the set has none."""
    return None if data.concepts is None else torch.from_numpy(data.concepts[data.image_index[list(rows)]])


def image_concepts(cfg: VQATrainConfig, paths: Sequence[Path]) -> np.ndarray | None:
    """The probabilities ``(images, concepts)`` of ``cfg.concepts``' detectors on ``paths``, from their cached
    region grids (None: the run reads no concepts)."""
    if cfg.concepts is None:
        return None
    concepts = Concepts.load(cfg.concepts)
    if concepts.encoder != cfg.encoder:
        raise ValueError(f"--concepts {cfg.concepts} reads {concepts.encoder} features, not {cfg.encoder}'s")
    encoder = build_encoder(cfg.encoder, cfg.encoder_weights)
    grids = cached_features(encoder, paths, cfg.cache_dir, regions=True, desc="region features")
    return detect(concepts.model, grids)


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
        logits = model(feats, tokens, lengths, batch_concepts(data, rows))
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
    return {
        "task": "vqa",
        "encoder": cfg.encoder,
        "preprocessing": ENCODERS[cfg.encoder].preprocessing.to_dict(),
        "model": asdict(model),
        "training": asdict(cfg),
        **(extra or {}),
    }


def load_splits(cfg: VQATrainConfig) -> list[tuple[str, DatasetSpec, list[VQAExample], list[VQAExample]]]:
    """Each dataset of the mix as (name, spec, training questions, validation questions). Validation is the
    dataset's ``val_split`` when it has one, else ``val_fraction`` of its training images, held out."""
    out = []
    for name, spec in cfg.datasets():
        train = load_vqa_dataset(spec.name, spec.root, cfg.train_split, cfg.questions, cfg.annotations)
        if spec.name in TRAIN_ONLY:
            val = []
        elif cfg.val_split and vqa_split_exists(spec.name, spec.root, cfg.val_split):
            val = load_vqa_dataset(spec.name, spec.root, cfg.val_split)
        else:
            train, val = split_by_image(train, cfg.val_fraction, cfg.split_seed)
        out.append((name, spec, train, val))
    return out


def image_features(
    encoder_name: str,
    encoder_weights: str | None,
    examples: Iterable[VQAExample],
    cache_dir: str | Path | None,
    flip: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, dict[Path, int]]:
    """Cached features of every image the questions refer to (and of the mirrored images when ``flip``),
    and each image path's row."""
    paths = sorted({e.path for e in examples})
    encoder = build_encoder(encoder_name, encoder_weights)
    feats = cached_features(encoder, paths, cache_dir, desc="image features")
    flipped = cached_features(encoder, paths, cache_dir, flip=True, desc="mirrored image features") if flip else None
    return feats, flipped, {p: i for i, p in enumerate(paths)}


def evaluate_weights(
    model: VQAModel, vocab: Vocabulary, answers: list[str], examples: list[VQAExample], cfg: VQATrainConfig
) -> dict[str, float]:
    """Loss and accuracy of trained weights (a model, its vocabulary and answers) on ``examples``, such as a
    dataset's validation questions (:func:`load_splits`) or a test set, with the image features cached as ``cfg``
    says (its encoder and cache folder): how a benchmark scores weights as training scored them."""
    feats, _, rows = image_features(cfg.encoder, cfg.encoder_weights, examples, cfg.cache_dir)
    concepts = image_concepts(cfg, sorted(rows, key=rows.get))
    return evaluate(model, build_vqa_set(examples, feats, None, rows, vocab, answer_index(answers), concepts), answers)


class VQATask(Task):
    """VQA as a :class:`~captioner.training.Task`: soft cross-entropy over the answer vocabulary, on batches of
    similar-length questions, with mirrored images (and "left"/"right" swapped) when ``flip_augment``."""

    best_by = "accuracy"

    def __init__(self, cfg: VQATrainConfig, last: Path | None, rank: int, world: int):
        self.cfg = cfg
        mix = load_splits(cfg)
        train_examples = [e for _, _, train, _ in mix for e in train]
        val_examples = [e for _, _, _, val in mix for e in val]
        if not train_examples:
            raise ValueError("no training questions")
        if last is not None:  # a resumed run keeps its vocabularies
            self.vocab, self.answers = Vocabulary.load(last / VOCAB_FILE), read_json(last / ANSWERS_FILE)
        else:
            self.vocab = Vocabulary.build((e.question for e in train_examples), cfg.min_count, cfg.max_length)
            check_vocabulary(len(self.vocab), len(SPECIALS), cfg.min_count)
            self.answers = build_answer_vocab(train_examples, cfg.top_answers)
        index = answer_index(self.answers)
        feats, flipped, rows = rank_zero_first(
            rank,
            world,
            lambda: image_features(
                cfg.encoder, cfg.encoder_weights, train_examples + val_examples, cfg.cache_dir, cfg.flip_augment
            ),
        )
        concepts = rank_zero_first(rank, world, lambda: image_concepts(cfg, sorted(rows, key=rows.get)))
        self.train_set = build_vqa_set(train_examples, feats, flipped, rows, self.vocab, index, concepts)
        self.val_sets = {
            name: build_vqa_set(val, feats, None, rows, self.vocab, index, concepts) for name, _, _, val in mix if val
        }
        self.trainable = [i for i, t in enumerate(self.train_set.targets) if t]  # questions with a known answer
        if not self.trainable:
            raise ValueError("no training question has an answer in the answer vocabulary")
        example_source = np.repeat(np.arange(len(mix)), [len(train) for _, _, train, _ in mix])
        self.trainable_source = example_source[self.trainable]  # the dataset of each trainable question
        self.mix_weights = [spec.weight for _, spec, _, _ in mix]
        self.lengths = [len(t) for t in self.train_set.tokens]
        concept_dim = 0 if concepts is None else concepts.shape[1]
        sizes = (len(self.vocab), len(self.answers), feats.shape[-1], concept_dim)
        shape = lambda: VQAConfig(*sizes, **{k: getattr(cfg, k) for k in MODEL_KEYS})  # noqa: E731
        self.vqa_config, self.model = new_or_resumed(VQAModel, VQAConfig, last, shape, "the VQA model")

    def phases(self) -> list[Phase]:
        return [Phase(self.cfg.epochs, self._batches, self._loss)]

    def _batches(self, generator: torch.Generator) -> list[Batch]:
        """Batches of similar-length questions, each dataset's drawn by its weight, some mirrored."""
        rows = [self.trainable[i] for i in weighted_rows(self.trainable_source, self.mix_weights, generator)]
        return bucketed_batches(rows, self.lengths, self.cfg.batch_size, generator, self.cfg.flip_augment)

    def _loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        feats, tokens, lengths, targets = collate(self.train_set, batch.rows, len(self.answers), batch.flips)
        loss = soft_cross_entropy(net(feats, tokens, lengths, batch_concepts(self.train_set, batch.rows)), targets)
        return loss, loss.item()

    def validate(self) -> dict:
        return validate(self.model, self.val_sets, self.answers) if self.val_sets else {}

    def report(self, scores: dict) -> str:
        per_dataset = ", ".join(
            f"{name} val loss {d['loss']:.3f} accuracy {d['accuracy']:.4f}"
            for name, d in scores.get("datasets", {}).items()
        )
        return per_dataset + (f", mean accuracy {scores['accuracy']:.4f}" if len(self.val_sets) > 1 else "")

    def save(self, folder: Path, extra: dict | None = None) -> None:
        self.vocab.save(folder / VOCAB_FILE)
        write_json(folder / ANSWERS_FILE, self.answers)
        save_checkpoint(folder, self.model, model_config(self.cfg, self.vqa_config, extra))


def train_vqa(cfg: VQATrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train a VQA model on one dataset or a mix; returns the best validation scores. Writes ``best/`` and
    ``last/`` under ``cfg.out``, refusing to replace a finished run there unless ``overwrite``.

    With no validation questions (``val_fraction=0`` and no ``val_split``) ``best/`` is the last epoch.
    """
    return fit(VQATask, cfg, resume, overwrite)
