"""Training the caption decoder on cached image features, with teacher forcing.

One process or many (``torchrun``: DistributedDataParallel, gloo on CPU, nccl on GPU) run the
same code. Every epoch is validated (loss and CIDEr on the dev split); ``best/`` keeps the best
checkpoint and ``last/`` the latest, with optimizer and RNG state so ``--resume`` continues a
killed run exactly where an uninterrupted one would be.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .checkpoint import (ENCODER_PREFIX, atomic_directory, existing_checkpoint, load_checkpoint, load_state,
                         save_checkpoint, save_state, split_encoder_weights)
from .data import DatasetSpec, ImageCaptions, load_caption_dataset
from .decoding import DecodeConfig, decode
from .encoder import ImageEncoder, build_encoder
from .evaluation import corpus_scores
from .features import DEFAULT_CACHE, batched, cached_features
from .model import CaptionDecoder, DecoderConfig
from .vocab import Vocabulary, detokenize, pad_ids, tokenize


@dataclass
class TrainConfig:
    """Everything a caption training run depends on; saved beside the checkpoints."""

    data: tuple[str, ...] = ("flickr8k:../shared/data/flickr8k", "coco:../shared/data/coco")  # NAME:ROOT[:WEIGHT]
    annotations: str | None = None
    train_split: str = "train"
    val_split: str = "dev"
    out: str = "runs/caption"
    encoder: str = "efficientnet-lite0"
    encoder_weights: str | None = None
    finetune_blocks: int = 0
    encoder_lr: float = 1e-4
    flip_augment: bool = False
    min_count: int = 5
    max_length: int = 20
    embed_dim: int = 256
    hidden_dim: int = 512
    image_dim: int = 512
    num_layers: int = 1
    cell: str = "lstm"
    image_input: str = "every_step"
    dropout: float = 0.3
    attention: bool = False
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    label_smoothing: float = 0.0
    scst_epochs: int = 0
    scst_samples: int = 5
    scst_lr: float = 5e-5
    init_from: str | None = None
    seed: int = 0
    save_every: int = 0
    max_val_images: int = 0
    cache_dir: str = str(DEFAULT_CACHE)
    threads: int = 0


# The settings that shape the model: a resumed run must be given the same ones.
ARCHITECTURE = ("encoder", "finetune_blocks", "embed_dim", "hidden_dim", "image_dim", "num_layers", "cell",
                "image_input", "dropout", "attention")


# ---------------------------------------------------------------- data


@dataclass
class CaptionSet:
    """Captions as token-id rows aligned with rows of image features."""

    features: np.ndarray  # (images, feature_dim), or (images, regions, feature_dim) for attention; memory-mapped
    flipped: np.ndarray | None  # mirrored-image features, or None
    image_index: np.ndarray  # (captions,) row into ``features``
    tokens: list[list[int]]
    flipped_tokens: list[list[int]]  # the same captions with "left" and "right" swapped


def _swap_left_right(ids: list[int], vocab: Vocabulary) -> list[int]:
    swap = {vocab.index.get("left"): vocab.index.get("right"), vocab.index.get("right"): vocab.index.get("left")}
    swap.pop(None, None)
    return [swap.get(i, i) for i in ids]


def build_caption_set(items: Sequence[ImageCaptions], features: np.ndarray, flipped: np.ndarray | None,
                      vocab: Vocabulary) -> CaptionSet:
    index, tokens = [], []
    for row, item in enumerate(items):
        for caption in item.captions:
            index.append(row)
            tokens.append(vocab.encode(caption))
    return CaptionSet(features, flipped, np.array(index), tokens, [_swap_left_right(t, vocab) for t in tokens])


def weighted_rows(groups: Sequence[int], weights: Sequence[float], generator: torch.Generator) -> list[int]:
    """One epoch's rows of a mix: each row of dataset ``g`` ``int(weights[g])`` times, plus a random
    ``weights[g] % 1`` share of them. The count is the same every epoch, so the schedule is too."""
    groups = np.asarray(groups)
    rows: list[int] = []
    for g, weight in enumerate(weights):
        members = np.flatnonzero(groups == g).tolist()
        whole, part = divmod(weight, 1.0)
        rows += members * int(whole)
        if part:
            rows += [members[i] for i in torch.randperm(len(members), generator=generator)[: round(part * len(members))]]
    return rows


def make_batches(rows: Sequence[int], lengths: Sequence[int], batch_size: int,
                 generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of ``rows`` of similar length (``lengths[row]``), so little compute goes to padding."""
    order = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
    pool = batch_size * 50
    batches = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i : i + pool], key=lambda j: lengths[j])
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[p] for p in perm]


def collate(data: CaptionSet, rows: Sequence[int], flips: Sequence[bool] | None = None):
    """Features ``(B, D)`` or ``(B, R, D)``, padded tokens ``(B, T)`` and input lengths for caption rows."""
    flips = flips if flips is not None else [False] * len(rows)
    tokens, lengths = pad_ids([data.flipped_tokens[r] if f else data.tokens[r] for r, f in zip(rows, flips)])
    img = data.image_index[list(rows)]
    feats = np.stack([(data.flipped if f else data.features)[i] for i, f in zip(img, flips)])
    return torch.from_numpy(feats).float(), tokens, lengths - 1  # inputs: all but the last token


def caption_loss(model: nn.Module, feats, tokens, lengths, label_smoothing: float = 0.0) -> torch.Tensor:
    logits = model(feats, tokens, lengths)
    mask = torch.arange(tokens.shape[1] - 1)[None, :] < lengths[:, None]
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
    other samples of the same image (Luo 2020), so no greedy decode is needed.
    """
    image = model.encode_image(feats).repeat_interleave(samples)
    n = len(image)
    state = model.initial_state(image)
    prev = torch.full((n,), Vocabulary.start_id, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)
    log_prob_sum, words = torch.zeros(n), [[] for _ in range(n)]
    for t in range(vocab.max_length + 1):
        log_probs, state = model.step(prev, state, image, first=t == 0)
        log_probs = log_probs.masked_fill(torch.zeros_like(log_probs, dtype=torch.bool).index_fill_(
            1, torch.tensor([Vocabulary.pad_id, Vocabulary.start_id, Vocabulary.unk_id]), True), float("-inf"))
        if t == vocab.max_length:  # out of room: the only choice left is <end>
            word = torch.full((n,), Vocabulary.end_id, dtype=torch.long)
        else:
            word = torch.multinomial(log_probs.detach().exp(), 1)[:, 0]
        log_prob_sum = log_prob_sum + log_probs.gather(1, word[:, None])[:, 0] * alive
        for i in alive.nonzero()[:, 0].tolist():
            if word[i] != Vocabulary.end_id:
                words[i].append(vocab.words[word[i]])
        alive = alive & (word != Vocabulary.end_id)
        prev = word
        if not alive.any():
            break
    rewards = torch.tensor([reward(images[i // samples], w) for i, w in enumerate(words)]).view(-1, samples)
    baseline = (rewards.sum(1, keepdim=True) - rewards) / (samples - 1)
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


# ---------------------------------------------------------------- distributed helpers


def _dist_setup() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


# ---------------------------------------------------------------- the loop


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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_lambda(min_lr_ratio: float, total_steps: int):
    """Cosine decay from ``lr`` to ``lr * min_lr_ratio`` over the run."""
    def f(step: int) -> float:
        progress = min(step / max(total_steps, 1), 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def model_config(cfg: TrainConfig, decoder: DecoderConfig, extra: dict | None = None) -> dict:
    """The JSON config shipped with caption weights: what to build and how it was trained."""
    return {"task": "caption", "encoder": cfg.encoder, "decoder": asdict(decoder),
            "training": asdict(cfg), **(extra or {})}


def dataset_names(specs: Sequence[DatasetSpec]) -> list[str]:
    """A short name per dataset of a mix, for reports: the format name, numbered when it repeats."""
    names = [s.name for s in specs]
    return [n if names.count(n) == 1 else f"{n}-{names[:i + 1].count(n)}" for i, n in enumerate(names)]


def load_mix(cfg: TrainConfig, split: str) -> list[tuple[str, DatasetSpec, list[ImageCaptions]]]:
    """Each dataset of ``cfg.data`` as (name, spec, its ``split`` images and captions)."""
    specs = [DatasetSpec.parse(d) for d in cfg.data]
    if not specs:
        raise ValueError("no datasets: give --data NAME:ROOT at least once")
    return [(name, spec, load_caption_dataset(spec.name, spec.root, split, cfg.annotations))
            for name, spec in zip(dataset_names(specs), specs)]


def check_run_folder(out: Path, saved_training: dict | None, cfg, architecture: Sequence[str],
                     resume: bool, overwrite: bool) -> None:
    """Refuse to silently replace a finished run, or to resume one with other architecture flags
    (which would build a different model than the one in the checkpoint)."""
    if resume:
        changed = [k for k in architecture if saved_training is not None and k in saved_training
                   and saved_training[k] != json.loads(json.dumps(getattr(cfg, k)))]
        if changed:
            raise ValueError(f"--resume: {out / 'last'} was trained with " + ", ".join(
                f"--{k.replace('_', '-')} {saved_training[k]}" for k in changed) + "; resume with the same settings")
    elif not overwrite and any((out / d / "config.json").exists() for d in ("best", "last")):
        raise ValueError(f"{out} already holds a run: add --resume to continue it or --overwrite to replace it")


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train a captioner on one dataset or a mix; returns the best validation scores. Writes ``best/`` and
    ``last/`` under ``cfg.out``, refusing to replace a finished run there unless ``overwrite``."""
    rank, world = _dist_setup()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    last = existing_checkpoint(out / "last") if resume else None
    saved = json.loads((last / "config.json").read_text())["training"] if last else None
    check_run_folder(out, saved, cfg, ARCHITECTURE, resume, overwrite)
    if resume and last is None and rank == 0:
        print(f"--resume: no checkpoint under {out / 'last'}; starting from scratch")
    _seed_everything(cfg.seed)

    train_mix = load_mix(cfg, cfg.train_split)
    val_parts = [(name, items[: cfg.max_val_images or None]) for name, _, items in load_mix(cfg, cfg.val_split)]
    train_items = [it for _, _, items in train_mix for it in items]
    item_dataset = np.repeat(np.arange(len(train_mix)), [len(items) for _, _, items in train_mix])
    mix_weights = [spec.weight for _, spec, _ in train_mix]
    val_items = [it for _, items in val_parts for it in items]
    init = last or (Path(cfg.init_from) if cfg.init_from else None)  # weights (and vocabulary) to start from
    if init is not None:
        vocab = Vocabulary.load(init / "vocab.json")
        init_weights, init_config = load_checkpoint(init)
        decoder_weights, tuned = split_encoder_weights(init_weights)
    else:
        vocab = Vocabulary.build((c for it in train_items for c in it.captions), cfg.min_count, cfg.max_length)
        tuned = {}

    # With fine-tuning, the cache holds the frozen trunk's output and the encoder's top runs in training.
    encoder = build_encoder(cfg.encoder, cfg.encoder_weights, cfg.finetune_blocks, tuned)
    # Rank 0 fills the feature cache first; the others then read it.
    for turn in ([0, 1] if world > 1 else [0]):
        if (rank == 0) == (turn == 0):
            feats = {name: cached_features(encoder, [it.path for it in items], cfg.cache_dir, flip=flip,
                                           regions=cfg.attention, desc=f"{name} features")
                     for name, items, flip in [("train", train_items, False), ("val", val_items, False)]
                     + ([("train_flip", train_items, True)] if cfg.flip_augment else [])}
        _barrier(world)
    tuning = cfg.finetune_blocks > 0
    image_features = encoder.top if tuning else (lambda f: f)
    feature_dim = encoder.feature_dim
    if not tuning:
        del encoder
    train_set = build_caption_set(train_items, feats["train"], feats.get("train_flip"), vocab)
    val_set = build_caption_set(val_items, feats["val"], None, vocab)

    if init is not None:
        dcfg = DecoderConfig(**init_config["decoder"])
    else:
        dcfg = DecoderConfig(len(vocab), feature_dim, cfg.embed_dim, cfg.hidden_dim, cfg.image_dim,
                             cfg.num_layers, cfg.cell, cfg.image_input, cfg.dropout, cfg.attention)
    model = CaptionDecoder(dcfg)
    if init is not None:
        model.load_state_dict(decoder_weights)
    encoder_params = [p for p in encoder.parameters() if p.requires_grad] if tuning else []
    groups = [{"params": list(model.parameters()), "lr": cfg.lr}] + (
        [{"params": encoder_params, "lr": cfg.encoder_lr}] if tuning else [])
    optimizer = torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    lengths = [len(t) for t in train_set.tokens]
    caption_dataset = item_dataset[train_set.image_index]
    steps_per_epoch = len(make_batches(weighted_rows(caption_dataset, mix_weights, torch.Generator()), lengths,
                                       cfg.batch_size, torch.Generator())) // world  # equal on every rank
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.min_lr_ratio, steps_per_epoch * cfg.epochs))
    epoch, step_in_epoch, history, best = 0, 0, [], None
    if last is not None:
        state = load_state(last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        epoch, step_in_epoch, history, best = state["epoch"], state["step_in_epoch"], state["history"], state["best"]
        if rank == 0:
            print(f"resumed from {last} at epoch {epoch + 1}, step {step_in_epoch}")
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    extra_files = {"vocab.json": {"max_length": vocab.max_length, "words": vocab.words}}

    def weights() -> dict[str, torch.Tensor]:
        """The decoder's weights, and the encoder's fine-tuned ones (trained here, or loaded) under ``encoder.``."""
        encoder_weights = encoder.tuned_state_dict() if tuning else tuned
        return {**model.state_dict(), **{ENCODER_PREFIX + k: v for k, v in encoder_weights.items()}}

    def save_last(epoch: int, step: int) -> None:
        if rank != 0:
            return
        with atomic_directory(out / "last") as tmp:
            save_checkpoint(tmp, weights(), model_config(cfg, dcfg), extra_files)
            save_state(tmp, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "rng": torch.get_rng_state(), "epoch": epoch, "step_in_epoch": step,
                             "history": history, "best": best})

    reward = CiderReward([[tokenize(c) for c in it.captions] for it in train_items]) if cfg.scst_epochs else None
    total_epochs = cfg.epochs + cfg.scst_epochs
    while epoch < total_epochs:
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # the epoch's order depends on nothing else
        scst = epoch >= cfg.epochs
        if epoch == cfg.epochs > 0 and step_in_epoch == 0:  # cross-entropy done: SCST from its best epoch
            _start_from_best(model, encoder if tuning else None, optimizer, out / "best", rank, world)
        if scst:  # batches of images, each sampled scst_samples times
            order = weighted_rows(item_dataset, mix_weights, gen)
            order = [order[i] for i in torch.randperm(len(order), generator=gen).tolist()]
            per_batch = max(1, cfg.batch_size // cfg.scst_samples)
            batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
            batches = batches[rank::world][: len(batches) // world]
        else:  # batches of similar-length captions
            batches = make_batches(weighted_rows(caption_dataset, mix_weights, gen), lengths, cfg.batch_size, gen)
            flips = (torch.rand(len(lengths), generator=gen) < 0.5).tolist() if cfg.flip_augment else None
            batches = batches[rank::world][: steps_per_epoch]
        net.train()
        started, seen, loss_sum = time.time(), 0, 0.0
        bar = tqdm(total=len(batches), initial=step_in_epoch, disable=rank != 0, unit="batch",
                   desc=f"epoch {epoch + 1}/{total_epochs}" + (" (SCST)" if scst else ""))
        for step in range(step_in_epoch, len(batches)):
            rows = batches[step]
            if scst:
                feats_b = torch.from_numpy(np.stack([train_set.features[i] for i in rows])).float()
                loss, value = scst_loss(net.module if world > 1 else net, image_features(feats_b), rows, reward,
                                        vocab, cfg.scst_samples)
                for group in optimizer.param_groups:  # the encoder keeps its ratio to the decoder's rate
                    group["lr"] = cfg.scst_lr * group["initial_lr"] / cfg.lr
            else:
                feats_b, tokens, lens = collate(train_set, rows, [flips[r] for r in rows] if flips else None)
                loss = caption_loss(net, image_features(feats_b), tokens, lens, cfg.label_smoothing)
                value = loss.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:  # DDP averages the decoder's gradients, except in SCST's sampling loop (not its forward)
                for p in [*(model.parameters() if scst else []), *encoder_params]:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= world
            nn.utils.clip_grad_norm_([*model.parameters(), *encoder_params], cfg.clip_norm)
            optimizer.step()
            if not scst:
                scheduler.step()
            loss_sum, seen = loss_sum + value, seen + 1
            bar.update(1)
            bar.set_postfix({"reward" if scst else "loss": f"{loss_sum / seen:.3f}",
                             "lr": f"{optimizer.param_groups[0]['lr']:.2e}"})
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < len(batches):
                save_last(epoch, step + 1)
        bar.close()
        step_in_epoch = 0
        epoch += 1
        if rank == 0:
            scores = validate(model, val_set, val_parts, vocab, image_features)
            scores.update(epoch=epoch, seconds=round(time.time() - started, 1),
                          **{"train_reward" if scst else "train_loss": loss_sum / max(seen, 1)})
            history.append(scores)
            improved = best is None or scores["CIDEr"] > best["CIDEr"]
            train_figure = f"train reward {scores['train_reward']:.3f}" if scst else \
                f"train loss {scores['train_loss']:.3f}"
            per_dataset = "".join(f", {name} BLEU-4 {d['Bleu_4']:.4f} CIDEr {d['CIDEr']:.4f}"
                                  for name, d in scores["datasets"].items())
            mean = f", mean CIDEr {scores['CIDEr']:.4f}" if len(scores["datasets"]) > 1 else ""
            print(f"epoch {epoch}: {train_figure}, val loss {scores['loss']:.3f}{per_dataset}{mean}"
                  + (" (best)" if improved else ""))
            if improved:
                best = scores
                with atomic_directory(out / "best") as tmp:
                    save_checkpoint(tmp, weights(), model_config(cfg, dcfg, {"validation": scores}), extra_files)
        save_last(epoch, 0)
        _barrier(world)
    if world > 1:
        dist.destroy_process_group()
    return best or {}
