"""Training the caption decoder on cached image features: teacher forcing, then optionally self-critical training.

:class:`CaptionTask` plugs captioning into the shared loop of :mod:`captioner.training` (processes,
schedule, checkpoints, exact ``--resume``). Every epoch is validated (loss, BLEU-4 and CIDEr of
greedy captions on each dataset's dev split); the mean CIDEr over the datasets picks ``best/``.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import ENCODER_PREFIX, load_checkpoint, split_encoder_weights
from .data import DatasetSpec, ImageCaptions, load_caption_dataset
from .decoding import DecodeConfig, decode, mask_special_tokens, sample_words
from .encoder import ENCODERS, ImageEncoder, build_encoder
from .caption_metrics import corpus_scores
from .features import batched, cached_features
from .model import CaptionDecoder, DecoderConfig
# dataset_names is not used here: it is imported for the callers of captioner.train.dataset_names
from .training import (RunConfig, Task, dataset_names, fit, gather_features, named_specs, rank_zero_first, shape_keys,
                       swap_left_right, vocab_json, weighted_rows)
from .vocab import Vocabulary, detokenize, pad_ids, tokenize


@dataclass
class TrainConfig(RunConfig):
    """Everything a caption training run depends on; saved beside the checkpoints. The model's shape
    defaults are :class:`DecoderConfig`'s, defined there only; the shared ones are :class:`RunConfig`'s."""

    data: tuple[str, ...] = ("flickr8k:../shared/data/flickr8k", "coco:../shared/data/coco")
    out: str = "runs/caption"
    min_count: int = 5
    finetune_blocks: int = 0
    encoder_lr: float = 1e-4
    embed_dim: int = DecoderConfig.embed_dim
    hidden_dim: int = DecoderConfig.hidden_dim
    image_dim: int = DecoderConfig.image_dim
    num_layers: int = DecoderConfig.num_layers
    cell: str = DecoderConfig.cell
    image_input: str = DecoderConfig.image_input
    dropout: float = DecoderConfig.dropout
    attention: bool = DecoderConfig.attention
    label_smoothing: float = 0.0
    scst_epochs: int = 0
    scst_samples: int = 5
    scst_lr: float = 5e-5
    init_from: str | None = None
    max_val_images: int = 0


# The settings that shape the model: a resumed run must be given the same ones.
DECODER_KEYS = shape_keys(DecoderConfig, "vocab_size", "feature_dim")
ARCHITECTURE = ("encoder", "finetune_blocks", *DECODER_KEYS)


# ---------------------------------------------------------------- data


@dataclass
class CaptionSet:
    """Captions as token-id rows aligned with rows of image features."""

    features: np.ndarray  # (images, feature_dim), or (images, regions, feature_dim) for attention; memory-mapped
    flipped: np.ndarray | None  # mirrored-image features, or None
    image_index: np.ndarray  # (captions,) row into ``features``
    tokens: list[list[int]]
    flipped_tokens: list[list[int]]  # the same captions with "left" and "right" swapped


def build_caption_set(items: Sequence[ImageCaptions], features: np.ndarray, flipped: np.ndarray | None,
                      vocab: Vocabulary) -> CaptionSet:
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


def caption_loss(model: nn.Module, feats, tokens, lengths, label_smoothing: float = 0.0) -> torch.Tensor:
    logits = model(feats, tokens, lengths)  # (sum(lengths), vocab)
    mask = torch.arange(tokens.shape[1] - 1)[None, :] < lengths[:, None]  # (B, T - 1)
    return nn.functional.cross_entropy(logits, tokens[:, 1:][mask], label_smoothing=label_smoothing)


# ---------------------------------------------------------------- self-critical training (SCST)


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


class CiderReward:
    """CIDEr-D of a caption against its image's references, as the reward of self-critical training.

    Document frequencies come from the whole training set (Rennie et al. 2017), not from the batch,
    which is why this is not pycocoevalcap's scorer; evaluation always uses pycocoevalcap.
    """

    def __init__(self, references: Sequence[Sequence[Sequence[str]]], n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        self.df: Counter = Counter()
        for refs in references:
            self.df.update({g for r in refs for g in _ngrams(r, n)})
        self.log_images = math.log(len(references))
        self.refs = [[self._vector(r) for r in refs] for refs in references]

    def _vector(self, words: Sequence[str]):
        vec = [dict() for _ in range(self.n)]
        for g, tf in _ngrams(words, self.n).items():
            vec[len(g) - 1][g] = tf * (self.log_images - math.log(max(1.0, self.df[g])))
        norms = [math.sqrt(sum(x * x for x in v.values())) for v in vec]
        return vec, norms, len(words)

    def __call__(self, image: int, words: Sequence[str]) -> float:
        hyp, hyp_norms, hyp_len = self._vector(words)
        total = 0.0
        for ref, ref_norms, ref_len in self.refs[image]:
            penalty = math.exp(-((hyp_len - ref_len) ** 2) / (2 * self.sigma ** 2))
            for k in range(self.n):
                if hyp_norms[k] and ref_norms[k]:
                    dot = sum(min(x, ref[k].get(g, 0.0)) * ref[k].get(g, 0.0) for g, x in hyp[k].items())
                    total += penalty * dot / (hyp_norms[k] * ref_norms[k])
        return 10.0 * total / (self.n * len(self.refs[image]))


def scst_loss(model: CaptionDecoder, feats: torch.Tensor, images: Sequence[int], reward: CiderReward,
              vocab: Vocabulary, samples: int) -> tuple[torch.Tensor, float]:
    """Self-critical policy-gradient loss for a batch of images; also returns the mean reward.

    Each image gets ``samples`` sampled captions; a caption's baseline is the mean reward of the
    other samples of the same image (Luo 2020), so no greedy decode is needed. Words are drawn as
    decoding draws them (:func:`sample_words`, never a marker or ``<unk>``), but with gradients.
    """
    image = model.encode_image(feats).repeat_interleave(samples)  # n = B * samples rows
    n = len(image)
    state = model.initial_state(image)
    prev = torch.full((n,), Vocabulary.start_id, dtype=torch.long)  # (n,)
    alive = torch.ones(n, dtype=torch.bool)  # (n,) not yet past <end>
    log_prob_sum, words = torch.zeros(n), [[] for _ in range(n)]
    for t in range(vocab.max_length + 1):
        log_probs, state = model.step(prev, state, image, first=t == 0)
        log_probs = mask_special_tokens(log_probs)  # (n, vocab)
        if t == vocab.max_length:  # out of room: the only choice left is <end>
            word = torch.full((n,), Vocabulary.end_id, dtype=torch.long)
        else:
            word = sample_words(log_probs.detach().exp(), torch.rand(n, 1))  # (n,)
        log_prob_sum = log_prob_sum + log_probs.gather(1, word[:, None])[:, 0] * alive
        for i in alive.nonzero()[:, 0].tolist():
            if word[i] != Vocabulary.end_id:
                words[i].append(vocab.words[word[i]])
        alive = alive & (word != Vocabulary.end_id)
        prev = word
        if not alive.any():
            break
    rewards = torch.tensor([reward(images[i // samples], w) for i, w in enumerate(words)]).view(-1, samples)
    baseline = (rewards.sum(1, keepdim=True) - rewards) / (samples - 1)  # (B, samples) leave-one-out means
    advantage = (rewards - baseline).view(-1)
    return -(advantage * log_prob_sum).mean(), rewards.mean().item()


# ---------------------------------------------------------------- validation


@torch.no_grad()
def validate(model: CaptionDecoder, data: CaptionSet, parts: Sequence[tuple[str, Sequence[ImageCaptions]]],
             vocab: Vocabulary, image_features=lambda feats: feats, batch_size: int = 256) -> dict:
    """Validation loss (teacher forcing) over every dataset, and each dataset's BLEU-4 and CIDEr of greedy
    captions. ``Bleu_4`` and ``CIDEr`` are the means over the datasets, so each counts alike whatever its size;
    the mean CIDEr picks the best checkpoint.

    ``data`` holds the images of ``parts`` (name, items) in order. ``image_features`` turns the cached
    features into the decoder's input (a fine-tuned encoder's top)."""
    model.eval()
    total, count = 0.0, 0
    for rows in batched(range(len(data.tokens)), batch_size):
        feats, tokens, lengths = collate(data, list(rows))
        total += caption_loss(model, image_features(feats), tokens, lengths).item() * int(lengths.sum())
        count += int(lengths.sum())
    captions = []
    for rows in batched(range(len(data.features)), batch_size):
        feats = torch.from_numpy(np.array(data.features[rows.start : rows.stop], dtype=np.float32))
        hyps = decode(model, image_features(feats), DecodeConfig(method="greedy", max_length=vocab.max_length))
        captions += [detokenize(vocab.decode(h[0].tokens)) for h in hyps]
    per_dataset, start = {}, 0
    for name, items in parts:
        results = {it.image_id: c for it, c in zip(items, captions[start : start + len(items)])}
        scores = corpus_scores(results, {it.image_id: it.captions for it in items}, metrics=["Bleu", "CIDEr"])
        per_dataset[name] = {"Bleu_4": scores["Bleu_4"], "CIDEr": scores["CIDEr"]}
        start += len(items)
    return {"loss": total / max(count, 1), **{k: float(np.mean([d[k] for d in per_dataset.values()]))
                                               for k in ("Bleu_4", "CIDEr")}, "datasets": per_dataset}


# ---------------------------------------------------------------- the task


def _start_from_best(model: nn.Module, encoder: ImageEncoder | None, optimizer: torch.optim.Optimizer, best: Path,
                     rank: int, world: int) -> None:
    """Self-critical training after cross-entropy starts from the best cross-entropy epoch, with fresh
    Adam moments: the same as a second run with ``--init-from OUT/best``. Rank 0 reads the weights and
    sends them to the others, so no shared file system is needed. ``encoder``: one being fine-tuned."""
    if rank == 0:
        decoder_weights, tuned = split_encoder_weights(load_checkpoint(best)[0])
        model.load_state_dict(decoder_weights)
        if encoder is not None:
            encoder.load_tuned(tuned)
    if world > 1:
        tuned = list(encoder.tuned_state_dict().values()) if encoder is not None else []
        for tensor in [*model.state_dict().values(), *tuned]:
            dist.broadcast(tensor, 0)
    optimizer.state.clear()


def model_config(cfg: TrainConfig, decoder: DecoderConfig, extra: dict | None = None) -> dict:
    """The JSON config shipped with caption weights: what to build and how it was trained."""
    return {"task": "caption", "encoder": cfg.encoder, "preprocessing": ENCODERS[cfg.encoder].preprocessing.to_dict(),
            "decoder": asdict(decoder), "training": asdict(cfg), **(extra or {})}


def load_mix(cfg: TrainConfig, split: str) -> list[tuple[str, DatasetSpec, list[ImageCaptions]]]:
    """Each dataset of ``cfg.data`` as (name, spec, its ``split`` images and captions)."""
    return [(name, spec, load_caption_dataset(spec.name, spec.root, split, cfg.annotations))
            for name, spec in named_specs(cfg.data)]


class CaptionTask(Task):
    """Captioning as a :class:`~captioner.training.Task`: teacher-forced cross-entropy on batches of similar-length
    captions for ``epochs`` epochs, then ``scst_epochs`` of self-critical training on batches of images, from the
    best cross-entropy epoch. With ``finetune_blocks`` the encoder's top blocks train too, on cached trunk outputs."""

    architecture = ARCHITECTURE

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.encoder: ImageEncoder | None = None  # the encoder being fine-tuned, if any

    def build(self, last: Path | None, rank: int, world: int) -> None:
        cfg = self.cfg
        train_mix = load_mix(cfg, cfg.train_split)
        self.val_parts = [(name, items[: cfg.max_val_images or None])
                          for name, _, items in load_mix(cfg, cfg.val_split)]
        self.train_items = [it for _, _, items in train_mix for it in items]
        self.item_dataset = np.repeat(np.arange(len(train_mix)), [len(items) for _, _, items in train_mix])
        self.mix_weights = [spec.weight for _, spec, _ in train_mix]
        init = last or (Path(cfg.init_from) if cfg.init_from else None)  # weights (and vocabulary) to start from
        if init is not None:  # the architecture comes from the checkpoint (a resumed run's flags were checked)
            self.vocab = Vocabulary.load(init / "vocab.json")
            init_weights, init_config = load_checkpoint(init)
            decoder_weights, self.tuned = split_encoder_weights(init_weights)
        else:
            self.vocab = Vocabulary.build((c for it in self.train_items for c in it.captions), cfg.min_count,
                                          cfg.max_length)
            decoder_weights, self.tuned, init_config = None, {}, None
        feature_dim = self._cache_features(rank, world)
        self.dcfg = (DecoderConfig(**init_config["decoder"]) if init_config is not None else
                     DecoderConfig(len(self.vocab), feature_dim, **{k: getattr(cfg, k) for k in DECODER_KEYS}))
        self.model = CaptionDecoder(self.dcfg)
        if decoder_weights is not None:
            self.model.load_state_dict(decoder_weights)
        self.encoder_params = [p for p in self.encoder.parameters() if p.requires_grad] if self.encoder else []
        self.lengths = [len(t) for t in self.train_set.tokens]
        self.caption_dataset = self.item_dataset[self.train_set.image_index]
        self.extra_files = {"vocab.json": vocab_json(self.vocab)}
        self.reward = CiderReward([[tokenize(c) for c in it.captions] for it in self.train_items]) \
            if cfg.scst_epochs else None

    def _cache_features(self, rank: int, world: int) -> int:
        """Build the encoder, cache the features of the training and validation images, and make the caption
        sets; returns the feature size. With fine-tuning, the cache holds the frozen trunk's output and the
        encoder's top runs in training."""
        cfg = self.cfg
        encoder = build_encoder(cfg.encoder, cfg.encoder_weights, cfg.finetune_blocks, self.tuned)
        val_items = [it for _, items in self.val_parts for it in items]
        sets = [("train", self.train_items, False), ("val", val_items, False)] \
            + ([("train_flip", self.train_items, True)] if cfg.flip_augment else [])
        feats = rank_zero_first(rank, world, lambda: {
            name: cached_features(encoder, [it.path for it in items], cfg.cache_dir, flip=flip, regions=cfg.attention,
                                  desc=f"{name} features") for name, items, flip in sets})
        tuning = cfg.finetune_blocks > 0
        self.encoder = encoder if tuning else None
        self.image_features = encoder.top if tuning else (lambda f: f)
        self.train_set = build_caption_set(self.train_items, feats["train"], feats.get("train_flip"), self.vocab)
        self.val_set = build_caption_set(val_items, feats["val"], None, self.vocab)
        return encoder.feature_dim

    def param_groups(self) -> list[dict]:
        return super().param_groups() + (
            [{"params": self.encoder_params, "lr": self.cfg.encoder_lr}] if self.encoder else [])

    @property
    def total_epochs(self) -> int:
        return self.cfg.epochs + self.cfg.scst_epochs

    def scst(self, epoch: int) -> bool:
        """Whether ``epoch`` (counted from 0) is a self-critical one."""
        return epoch >= self.cfg.epochs

    def train_rows(self, generator: torch.Generator) -> list[int]:
        return weighted_rows(self.caption_dataset, self.mix_weights, generator)

    def start_epoch(self, epoch: int, optimizer: torch.optim.Optimizer, rank: int, world: int) -> None:
        if epoch == self.cfg.epochs > 0:  # cross-entropy done: SCST from its best epoch
            _start_from_best(self.model, self.encoder, optimizer, Path(self.cfg.out) / "best", rank, world)

    def epoch_batches(self, epoch: int, generator: torch.Generator, rank: int, world: int, steps: int) -> list:
        if not self.scst(epoch):  # batches of similar-length captions
            return super().epoch_batches(epoch, generator, rank, world, steps)
        order = weighted_rows(self.item_dataset, self.mix_weights, generator)  # batches of images, each sampled
        order = [order[i] for i in torch.randperm(len(order), generator=generator).tolist()]
        per_batch = max(1, self.cfg.batch_size // self.cfg.scst_samples)
        batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
        return batches[rank::world][: len(batches) // world]

    def loss(self, net: nn.Module, batch: list[int], epoch: int, optimizer: torch.optim.Optimizer
             ) -> tuple[torch.Tensor, float]:
        cfg = self.cfg
        if not self.scst(epoch):
            feats, tokens, lengths = collate(self.train_set, batch, self.batch_flips(batch))
            loss = caption_loss(net, self.image_features(feats), tokens, lengths, cfg.label_smoothing)
            return loss, loss.item()
        feats = torch.from_numpy(np.stack([self.train_set.features[i] for i in batch])).float()
        loss, reward = scst_loss(self.model, self.image_features(feats), batch, self.reward, self.vocab,
                                 cfg.scst_samples)
        for group in optimizer.param_groups:  # the encoder keeps its ratio to the decoder's rate
            group["lr"] = cfg.scst_lr * group["initial_lr"] / cfg.lr
        return loss, reward

    def synced_params(self, epoch: int) -> list[nn.Parameter]:
        # DDP averages the decoder's gradients, except in SCST's sampling loop (not its forward)
        return [*(self.model.parameters() if self.scst(epoch) else []), *self.encoder_params]

    def clipped_params(self) -> list[nn.Parameter]:
        return [*self.model.parameters(), *self.encoder_params]

    def scheduled(self, epoch: int) -> bool:
        return not self.scst(epoch)

    def epoch_label(self, epoch: int) -> str:
        return " (SCST)" if self.scst(epoch) else ""

    def postfix(self, mean: float, optimizer: torch.optim.Optimizer, epoch: int) -> dict[str, str]:
        return {"reward" if self.scst(epoch) else "loss": f"{mean:.3f}", "lr": f"{optimizer.param_groups[0]['lr']:.2e}"}

    def epoch_scores(self, epoch: int, started: float, train_figure: float) -> dict:
        scores = validate(self.model, self.val_set, self.val_parts, self.vocab, self.image_features)
        scores.update(epoch=epoch, seconds=round(time.time() - started, 1),
                      **{"train_reward" if self.scst(epoch - 1) else "train_loss": train_figure})
        return scores

    def improved(self, scores: dict, best: dict | None) -> bool:
        return best is None or scores["CIDEr"] > best["CIDEr"]

    def report(self, epoch: int, scores: dict, improved: bool) -> str:
        train_figure = f"train reward {scores['train_reward']:.3f}" if "train_reward" in scores else \
            f"train loss {scores['train_loss']:.3f}"
        per_dataset = "".join(f", {name} BLEU-4 {d['Bleu_4']:.4f} CIDEr {d['CIDEr']:.4f}"
                              for name, d in scores["datasets"].items())
        mean = f", mean CIDEr {scores['CIDEr']:.4f}" if len(scores["datasets"]) > 1 else ""
        return f"epoch {epoch}: {train_figure}, val loss {scores['loss']:.3f}{per_dataset}{mean}" + (
            " (best)" if improved else "")

    def weights(self) -> dict[str, torch.Tensor]:
        """The decoder's weights, and the encoder's fine-tuned ones (trained here, or loaded) under ``encoder.``."""
        encoder_weights = self.encoder.tuned_state_dict() if self.encoder else self.tuned
        return {**self.model.state_dict(), **{ENCODER_PREFIX + k: v for k, v in encoder_weights.items()}}

    def config(self, extra: dict | None = None) -> dict:
        return model_config(self.cfg, self.dcfg, extra)


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train a captioner on one dataset or a mix; returns the best validation scores. Writes ``best/`` and
    ``last/`` under ``cfg.out``, refusing to replace a finished run there unless ``overwrite``."""
    return fit(CaptionTask(cfg), resume, overwrite)
