"""Training the caption decoder on cached image features: teacher forcing, then optionally self-critical training.

:class:`CaptionTask` plugs captioning into the shared loop of :mod:`captioner.training` (processes,
schedule, checkpoints, exact ``--resume``). Every epoch is validated (loss, BLEU-4 and CIDEr of
greedy captions on each dataset's dev split); the mean CIDEr over the datasets picks ``best/``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import ENCODER_PREFIX, check_magnitude, load_checkpoint, save_checkpoint, split_encoder_weights
from ..data.captions import ImageCaptions
from ..data.datasets import CAPTION_DATASETS, DatasetSpec, load_caption_dataset
from ..decoder import CaptionDecoder, DecoderConfig, grow_word_rows
from ..decoding import DecodeConfig, decode
from ..encoder import ENCODERS, ImageEncoder, build_encoder
from ..features import batched, cached_features
from ..metrics.captions import corpus_scores
from ..pretrained import resolve_weights
from ..settings import like, setting
from ..vocab import SPECIALS, VOCAB_FILE, Vocabulary, detokenize, pad_ids, tokenize_words
from .loop import (
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
from .preflight import check_memory, check_vocabulary
from .processes import rank_zero_first
from .scst import CiderReward, scst_loss

DECODER_KEYS = shape_keys(DecoderConfig, "vocab_size", "feature_dim")  # the decoder settings a run sets


@dataclass
class TrainConfig(RunConfig):
    """Everything a caption training run depends on; saved beside the checkpoints. The decoder's settings are
    :class:`DecoderConfig`'s (default, range and help defined there only); the shared ones :class:`RunConfig`'s."""

    FORMATS: ClassVar[tuple[str, ...]] = CAPTION_DATASETS
    EXAMPLE: ClassVar[str] = "--data flickr8k:data/flickr8k --data coco:data/coco:1.5"
    DESCRIPTION: ClassVar[str] = (
        "Train the caption decoder on cached encoder features, on one dataset or a mix (one vocabulary over all "
        "of them). Each epoch reports every dataset's dev BLEU-4 and CIDEr; OUT/best keeps the epoch with the "
        "highest mean CIDEr over the datasets, and OUT/last the latest (for --resume). Run the same command "
        "under `torchrun --nproc_per_node N` for data parallelism."
    )
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("encoder", "finetune_blocks", *DECODER_KEYS)

    data: tuple[str, ...] = like(
        RunConfig,
        "data",
        help=(
            "a caption dataset as FORMAT:FOLDER[:WEIGHT], FORMAT one of flickr8k, coco, karpathy (FOLDER: the images "
            "root) or imagefolder (your images and a metadata.csv of file_name,caption); WEIGHT (at most 100) scales "
            "how often its captions are drawn per epoch (default 1)"
        ),
    )
    annotations: str | None = like(
        RunConfig,
        "annotations",
        help=(
            "COCO captions JSON or Karpathy dataset_*.json (for every coco or karpathy dataset; None: the "
            "dataset's own)"
        ),
    )
    out: str = like(RunConfig, "out", default="runs/caption")
    min_count: int = like(RunConfig, "min_count", default=5)
    max_length: int = like(RunConfig, "max_length", help="longest caption in words (longer ones are cut)")
    epochs: int = like(RunConfig, "epochs", help="cross-entropy epochs")
    batch_size: int = like(
        RunConfig, "batch_size", help="captions per batch and process (SCST: batch_size / scst_samples images)"
    )
    finetune_blocks: int = setting(0, "also train the encoder's top N blocks (0: frozen encoder)", low=0, high=16)
    encoder_lr: float = setting(1e-4, "learning rate of the fine-tuned encoder blocks", above=0, high=10)
    embed_dim: int = like(DecoderConfig, "embed_dim")
    hidden_dim: int = like(DecoderConfig, "hidden_dim")
    image_dim: int = like(DecoderConfig, "image_dim")
    num_layers: int = like(DecoderConfig, "num_layers")
    cell: str = like(DecoderConfig, "cell")
    image_input: str = like(DecoderConfig, "image_input")
    dropout: float = like(DecoderConfig, "dropout")
    attention: bool = like(DecoderConfig, "attention")
    label_smoothing: float = setting(0.0, "cross-entropy label smoothing", low=0, below=1)
    scst_epochs: int = setting(
        0, "self-critical (CIDEr-reward) epochs after the cross-entropy ones, from the best of those", low=0, high=1000
    )
    scst_samples: int = setting(
        5, "captions sampled per image in SCST (each one's baseline is the others' mean reward)", low=2, high=1000
    )
    scst_lr: float = setting(5e-5, "learning rate during SCST (fixed)", above=0, high=10)
    init_from: str | None = setting(
        None,
        "start from these weights (a weights entry name, or a checkpoint folder "
        "such as OUT/best) and their vocabulary, adding the words of the data "
        "seen at least --min-count times that it lacks (None: from scratch)",
    )
    max_val_images: int = setting(0, "validate on at most this many images of each dataset (0: all)", low=0, high=10**9)


# ---------------------------------------------------------------- data


@dataclass
class CaptionSet:
    """Captions as token-id rows aligned with rows of image features."""

    features: np.ndarray  # (images, feature_dim), or (images, regions, feature_dim) for attention; memory-mapped
    flipped: np.ndarray | None  # mirrored-image features, or None
    image_index: np.ndarray  # (captions,) row into ``features``
    tokens: list[list[int]]
    flipped_tokens: list[list[int]]  # the same captions with "left" and "right" swapped


def build_caption_set(
    items: Sequence[ImageCaptions], features: np.ndarray, flipped: np.ndarray | None, vocab: Vocabulary
) -> CaptionSet:
    """Every caption of ``items`` as token ids, each pointing at its image's row of ``features``."""
    index, tokens = [], []
    for row, item in enumerate(items):
        for caption in item.captions:
            index.append(row)
            tokens.append(vocab.encode(caption))
    return CaptionSet(features, flipped, np.array(index), tokens, [swap_left_right(t, vocab) for t in tokens])


def collate(data: CaptionSet, rows: Sequence[int], flips: Sequence[bool] | None = None):
    """Features ``(B, D)`` or ``(B, R, D)``, padded tokens ``(B, T)`` and input lengths for caption rows."""
    flips = flips if flips is not None else [False] * len(rows)
    tokens, lengths = pad_ids([data.flipped_tokens[r] if f else data.tokens[r] for r, f in zip(rows, flips)])
    feats = gather_features(data.features, data.flipped, data.image_index[list(rows)], flips)
    return feats, tokens, lengths - 1  # inputs: all but the last token


def caption_loss(
    model: nn.Module, feats: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Teacher-forced cross-entropy of the next word, over every position of every caption."""
    logits = model(feats, tokens, lengths)  # (sum(lengths), vocab)
    mask = torch.arange(tokens.shape[1] - 1)[None, :] < lengths[:, None]  # (B, T - 1)
    return nn.functional.cross_entropy(logits, tokens[:, 1:][mask], label_smoothing=label_smoothing)


def load_mix(cfg: TrainConfig, split: str) -> list[tuple[str, DatasetSpec, list[ImageCaptions]]]:
    """Each dataset of ``cfg.data`` as (name, spec, its ``split`` images and captions)."""
    return [
        (name, spec, load_caption_dataset(spec.name, spec.root, split, cfg.annotations))
        for name, spec in cfg.datasets()
    ]


# ---------------------------------------------------------------- validation


def _identity(feats: torch.Tensor) -> torch.Tensor:
    return feats


@torch.no_grad()
def validate(
    model: CaptionDecoder,
    data: CaptionSet,
    parts: Sequence[tuple[str, Sequence[ImageCaptions]]],
    vocab: Vocabulary,
    encoder_top: Callable[[torch.Tensor], torch.Tensor] = _identity,
    batch_size: int = 256,
) -> dict:
    """Validation loss (teacher forcing) over every dataset, and each dataset's BLEU-4 and CIDEr of greedy
    captions. ``Bleu_4`` and ``CIDEr`` are the means over the datasets, so each counts alike whatever its size;
    the mean CIDEr picks the best checkpoint.

    ``data`` holds the images of ``parts`` (name, items) in order. ``encoder_top`` turns the cached
    features into the decoder's input (a fine-tuned encoder's top)."""
    model.eval()
    total, count = 0.0, 0
    for rows in batched(range(len(data.tokens)), batch_size):
        feats, tokens, lengths = collate(data, list(rows))
        total += caption_loss(model, encoder_top(feats), tokens, lengths).item() * int(lengths.sum())
        count += int(lengths.sum())
    captions = []
    for rows in batched(range(len(data.features)), batch_size):
        feats = torch.from_numpy(np.array(data.features[rows.start : rows.stop], dtype=np.float32))
        hyps = decode(model, encoder_top(feats), DecodeConfig(method="greedy", max_length=vocab.max_length))
        captions += [detokenize(vocab.decode(h[0].tokens)) for h in hyps]
    per_dataset, start = {}, 0
    for name, items in parts:
        results = {it.image_id: c for it, c in zip(items, captions[start : start + len(items)])}
        scores = corpus_scores(results, {it.image_id: it.captions for it in items}, metrics=["Bleu", "CIDEr"])
        per_dataset[name] = {"Bleu_4": scores["Bleu_4"], "CIDEr": scores["CIDEr"]}
        start += len(items)
    return {
        "loss": total / max(count, 1),
        **{k: float(np.mean([d[k] for d in per_dataset.values()])) for k in ("Bleu_4", "CIDEr")},
        "datasets": per_dataset,
    }


# ---------------------------------------------------------------- the task


def model_config(cfg: TrainConfig, decoder: DecoderConfig, extra: dict | None = None) -> dict:
    """The JSON config shipped with caption weights: what to build and how it was trained."""
    return {
        "task": "caption",
        "encoder": cfg.encoder,
        "preprocessing": ENCODERS[cfg.encoder].preprocessing.to_dict(),
        "decoder": asdict(decoder),
        "training": asdict(cfg),
        **(extra or {}),
    }


def starting_point(
    cfg: TrainConfig, last: Path | None, items: Sequence[ImageCaptions]
) -> tuple[Vocabulary, dict[str, torch.Tensor] | None, dict[str, torch.Tensor], dict | None]:
    """What a run starts from: the vocabulary, decoder weights, fine-tuned encoder weights and config of a
    resumed run's ``last/``, as saved; or of ``--init-from`` (an entry name or a folder), its vocabulary grown by
    the words of the training captions ``items`` it lacks (seen ``min_count`` times), each with new rows
    (:func:`~captioner.model.grow_word_rows`), so that fine-tuning can learn them rather than read ``<unk>``;
    else a vocabulary of ``items`` and no weights."""
    captions = [c for it in items for c in it.captions]
    if last is None and cfg.init_from is None:
        return Vocabulary.build(captions, cfg.min_count, cfg.max_length), None, {}, None
    init = last or resolve_weights(cfg.init_from, "caption")[0]
    vocab = Vocabulary.load(init / VOCAB_FILE)
    weights, config = load_checkpoint(init)
    check_magnitude(init, weights)  # weights no training makes (x 1e30) would train on NaN losses
    decoder_weights, tuned = split_encoder_weights(weights)
    if last is None:
        vocab = vocab.extended(captions, cfg.min_count)
        decoder_weights = grow_word_rows(decoder_weights, len(vocab), cfg.seed)
        config = {**config, "decoder": {**config["decoder"], "vocab_size": len(vocab)}}
    return vocab, decoder_weights, tuned, config


def encode_caption_sets(
    cfg: TrainConfig,
    encoder: ImageEncoder,
    train_items: Sequence[ImageCaptions],
    val_items: Sequence[ImageCaptions],
    vocab: Vocabulary,
    rank: int,
    world: int,
) -> tuple[CaptionSet, CaptionSet]:
    """The training and validation caption sets, over the images' cached features (rank 0 fills the cache,
    the others read it). With fine-tuning, the cache holds the frozen trunk's output and the encoder's top
    runs in training."""
    sets = [("train", train_items, False), ("val", val_items, False)] + (
        [("train_flip", train_items, True)] if cfg.flip_augment else []
    )
    feats = rank_zero_first(
        rank,
        world,
        lambda: {
            name: cached_features(
                encoder,
                [it.path for it in items],
                cfg.cache_dir,
                flip=flip,
                regions=cfg.attention,
                desc=f"{name} features",
            )
            for name, items, flip in sets
        },
    )
    return (
        build_caption_set(train_items, feats["train"], feats.get("train_flip"), vocab),
        build_caption_set(val_items, feats["val"], None, vocab),
    )


class CaptionTask(Task):
    """Captioning as a :class:`~captioner.training.Task`: teacher-forced cross-entropy on batches of similar-length
    captions for ``epochs`` epochs, then ``scst_epochs`` of self-critical training on batches of images, from the
    best cross-entropy epoch. With ``finetune_blocks`` the encoder's top blocks train too, on cached trunk outputs."""

    best_by = "CIDEr"

    def __init__(self, cfg: TrainConfig, last: Path | None, rank: int, world: int):
        self.cfg, self.rank, self.world = cfg, rank, world
        train_mix = load_mix(cfg, cfg.train_split)
        self.val_parts = [
            (name, items[: cfg.max_val_images or None]) for name, _, items in load_mix(cfg, cfg.val_split)
        ]
        train_items = [it for _, _, items in train_mix for it in items]
        self.mix_weights = [spec.weight for _, spec, _ in train_mix]
        self.image_source = np.repeat(np.arange(len(train_mix)), [len(items) for _, _, items in train_mix])
        # with last/ or --init-from, the architecture comes from there
        self.vocab, decoder_weights, self.tuned, init_config = starting_point(cfg, last, train_items)
        check_vocabulary(len(self.vocab), len(SPECIALS), cfg.min_count)
        encoder = build_encoder(cfg.encoder, cfg.encoder_weights, cfg.finetune_blocks, self.tuned)
        self.decoder_config = (
            DecoderConfig(**init_config["decoder"])
            if init_config is not None
            else DecoderConfig(len(self.vocab), encoder.feature_dim, **{k: getattr(cfg, k) for k in DECODER_KEYS})
        )
        check_memory(lambda: CaptionDecoder(self.decoder_config), "the caption decoder")
        val_items = [it for _, items in self.val_parts for it in items]
        self.train_set, self.val_set = encode_caption_sets(
            cfg, encoder, train_items, val_items, self.vocab, rank, world
        )
        tuning = cfg.finetune_blocks > 0
        self.encoder = encoder if tuning else None  # the encoder being fine-tuned, if any
        self.encoder_top = encoder.top if tuning else _identity  # cached features -> the decoder's input
        self.encoder_params = [p for p in encoder.parameters() if p.requires_grad] if tuning else []
        self.model = CaptionDecoder(self.decoder_config)
        if decoder_weights is not None:
            self.model.load_state_dict(decoder_weights)
        self.lengths = [len(t) for t in self.train_set.tokens]  # of each training caption
        self.caption_source = self.image_source[self.train_set.image_index]  # the dataset of each training caption
        self.reward = (
            CiderReward([[tokenize_words(c) for c in it.captions] for it in train_items]) if cfg.scst_epochs else None
        )

    def param_groups(self) -> list[dict]:
        return super().param_groups() + (
            [{"params": self.encoder_params, "lr": self.cfg.encoder_lr}] if self.encoder else []
        )

    def phases(self) -> list[Phase]:
        cross_entropy = Phase(self.cfg.epochs, self._caption_batches, self._cross_entropy)
        if not self.cfg.scst_epochs:
            return [cross_entropy]
        # SCST samples word by word outside the DDP forward, so the loop averages the decoder's gradients itself.
        return [
            cross_entropy,
            Phase(
                self.cfg.scst_epochs,
                self._image_batches,
                self._self_critical,
                name="SCST",
                figure="reward",
                lr=self.cfg.scst_lr,
                start=self._start_from_best,
                ddp=False,
            ),
        ]

    def _caption_batches(self, generator: torch.Generator) -> list[Batch]:
        """Batches of similar-length captions, each dataset's drawn by its weight, some mirrored."""
        rows = weighted_rows(self.caption_source, self.mix_weights, generator)
        return bucketed_batches(rows, self.lengths, self.cfg.batch_size, generator, self.cfg.flip_augment)

    def _image_batches(self, generator: torch.Generator) -> list[Batch]:
        """Batches of images for SCST, ``batch_size / scst_samples`` each: every image is sampled that often."""
        order = weighted_rows(self.image_source, self.mix_weights, generator)
        order = [order[i] for i in torch.randperm(len(order), generator=generator).tolist()]
        per_batch = max(1, self.cfg.batch_size // self.cfg.scst_samples)
        return [Batch(order[i : i + per_batch]) for i in range(0, len(order), per_batch)]

    def _cross_entropy(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        feats, tokens, lengths = collate(self.train_set, batch.rows, batch.flips)
        loss = caption_loss(net, self.encoder_top(feats), tokens, lengths, self.cfg.label_smoothing)
        return loss, loss.item()

    def _self_critical(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        feats = torch.from_numpy(np.stack([self.train_set.features[i] for i in batch.rows])).float()
        return scst_loss(
            self.model, self.encoder_top(feats), batch.rows, self.reward, self.vocab, self.cfg.scst_samples
        )

    def _start_from_best(self, optimizer: torch.optim.Optimizer) -> None:
        """Self-critical training starts from the best cross-entropy epoch, with fresh Adam moments: the same as
        a second run with ``--init-from OUT/best``. Rank 0 reads the weights and sends them to the others, so no
        shared file system is needed."""
        if self.rank == 0:
            decoder_weights, tuned = split_encoder_weights(load_checkpoint(Path(self.cfg.out) / "best")[0])
            self.model.load_state_dict(decoder_weights)
            if self.encoder is not None:
                self.encoder.load_tuned(tuned)
        if self.world > 1:
            tuned = list(self.encoder.tuned_state_dict().values()) if self.encoder is not None else []
            for tensor in [*self.model.state_dict().values(), *tuned]:
                dist.broadcast(tensor, 0)
        optimizer.state.clear()

    def validate(self) -> dict:
        return validate(self.model, self.val_set, self.val_parts, self.vocab, self.encoder_top)

    def report(self, scores: dict) -> str:
        per_dataset = "".join(
            f", {name} BLEU-4 {d['Bleu_4']:.4f} CIDEr {d['CIDEr']:.4f}" for name, d in scores["datasets"].items()
        )
        mean = f", mean CIDEr {scores['CIDEr']:.4f}" if len(scores["datasets"]) > 1 else ""
        return f"val loss {scores['loss']:.3f}{per_dataset}{mean}"

    def save(self, folder: Path, extra: dict | None = None) -> None:
        """The decoder's weights with the encoder's fine-tuned ones (trained here, or loaded) under ``encoder.``,
        the vocabulary and the config."""
        encoder_weights = self.encoder.tuned_state_dict() if self.encoder else self.tuned
        weights = {**self.model.state_dict(), **{ENCODER_PREFIX + k: v for k, v in encoder_weights.items()}}
        self.vocab.save(folder / VOCAB_FILE)
        save_checkpoint(folder, weights, model_config(self.cfg, self.decoder_config, extra))


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train a captioner on one dataset or a mix; returns the best validation scores. Writes ``best/`` and
    ``last/`` under ``cfg.out``, refusing to replace a finished run there unless ``overwrite``."""
    return fit(CaptionTask, cfg, resume, overwrite)
