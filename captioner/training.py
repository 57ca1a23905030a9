"""The training loop that captions (``train.py``) and VQA (``train_vqa.py``) share, as tasks that plug into it.

One process or many (``torchrun``: DistributedDataParallel, gloo on CPU, nccl on GPU) run the same
code. :func:`fit` seeds everything, asks the task to build its data (cached image features) and
model, and trains with Adam, a cosine learning-rate schedule and gradient clipping. Every epoch is
validated; ``best/`` keeps the best checkpoint and ``last/`` the latest, with optimizer, scheduler and
RNG state, so ``--resume`` continues a killed run exactly where an uninterrupted one would be, even
in the middle of an epoch (``save_every``). A :class:`Task` says what differs: the data and model,
the batches of an epoch, the loss of a batch, validation and the config saved with the weights.

Runs train on one dataset or a mix (``NAME:ROOT[:WEIGHT]``): :func:`weighted_rows` draws each
dataset's rows ``WEIGHT`` times per epoch, and each dataset is validated apart.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .checkpoint import atomic_directory, existing_checkpoint, load_state, save_checkpoint, save_state
from .data import DatasetSpec
from .features import DEFAULT_CACHE
from .vocab import Vocabulary

T = TypeVar("T")


@dataclass
class RunConfig:
    """The settings every training run has, captions or VQA, with their shared defaults. A task's config
    (``TrainConfig``, ``VQATrainConfig``) adds its own settings and overrides the defaults that differ."""

    data: tuple[str, ...] = ()  # NAME:ROOT[:WEIGHT], one or more
    annotations: str | None = None
    train_split: str = "train"
    val_split: str = "dev"
    out: str = "runs/run"
    encoder: str = "efficientnet-lite0"
    encoder_weights: str | None = None
    flip_augment: bool = False
    min_count: int = 1
    max_length: int = 20
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    seed: int = 0
    save_every: int = 0
    cache_dir: str = str(DEFAULT_CACHE)
    threads: int = 0


# ---------------------------------------------------------------- processes, seeds, schedule


def dist_setup() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def rank_zero_first(rank: int, world: int, work: Callable[[], T]) -> T:
    """``work()`` on rank 0 first, then on the others: rank 0 fills the feature cache, the others read it."""
    for turn in ([0, 1] if world > 1 else [0]):
        if (rank == 0) == (turn == 0):
            result = work()
        barrier(world)
    return result


def average_gradients(params: Sequence[nn.Parameter], world: int) -> None:
    """Average the gradients of ``params`` over the processes (those DistributedDataParallel does not)."""
    if world > 1:
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(min_lr_ratio: float, total_steps: int) -> Callable[[int], float]:
    """Cosine decay from ``lr`` to ``lr * min_lr_ratio`` over the run."""
    def f(step: int) -> float:
        progress = min(step / max(total_steps, 1), 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


# ---------------------------------------------------------------- data of a mix


def dataset_names(specs: Sequence[DatasetSpec]) -> list[str]:
    """A short name per dataset of a mix, for reports: the format name, numbered when it repeats."""
    names = [s.name for s in specs]
    return [n if names.count(n) == 1 else f"{n}-{names[:i + 1].count(n)}" for i, n in enumerate(names)]


def named_specs(data: Sequence[str]) -> list[tuple[str, DatasetSpec]]:
    """Each ``NAME:ROOT[:WEIGHT]`` of a mix, parsed, with its short name."""
    specs = [DatasetSpec.parse(d) for d in data]
    if not specs:
        raise ValueError("no datasets: give --data NAME:ROOT at least once")
    return list(zip(dataset_names(specs), specs))


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


def swap_left_right(ids: list[int], vocab: Vocabulary) -> list[int]:
    """Token ids with "left" and "right" swapped: the text of a mirrored image."""
    swap = {vocab.index.get("left"): vocab.index.get("right"), vocab.index.get("right"): vocab.index.get("left")}
    swap.pop(None, None)
    return [swap.get(i, i) for i in ids]


def gather_features(features: np.ndarray, flipped: np.ndarray | None, images: Sequence[int],
                    flips: Sequence[bool] | None) -> torch.Tensor:
    """Rows ``images`` of the cached features ``(B, D)`` or ``(B, R, D)``, mirrored where ``flips[i]``."""
    flips = flips if flips is not None else [False] * len(images)
    return torch.from_numpy(np.stack([(flipped if f else features)[i] for i, f in zip(images, flips)])).float()


def vocab_json(vocab: Vocabulary) -> dict:
    """What ``vocab.json`` beside the weights holds."""
    return {"max_length": vocab.max_length, "words": vocab.words}


# ---------------------------------------------------------------- configs and run folders


def shape_keys(model_config_cls: type, *data_keys: str) -> tuple[str, ...]:
    """The fields of a model config that a training config sets: all but those the data decides."""
    return tuple(f.name for f in fields(model_config_cls) if f.name not in data_keys)


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


# ---------------------------------------------------------------- tasks


class Task:
    """What :func:`fit` trains. ``build`` makes the data and ``model``; the defaults here are plain
    cross-entropy-style training on length-bucketed batches, with optional mirrored images.

    A subclass sets ``cfg`` (its training config), ``architecture`` (the flags a resumed run must keep)
    and, in ``build``, ``model`` and ``lengths`` (token count of each training row).
    """

    cfg: Any
    architecture: tuple[str, ...] = ()
    model: nn.Module
    lengths: list[int]
    extra_files: dict[str, Any]
    flips: list[bool] | None = None  # this epoch's mirrored rows

    def build(self, last: Path | None, rank: int, world: int) -> None:
        """Load the data and cache its features, and build ``model`` (with ``last``'s weights on resume)."""
        raise NotImplementedError

    def train_rows(self, generator: torch.Generator) -> list[int]:
        """The training rows of one epoch (a mix draws each dataset's rows by its weight)."""
        raise NotImplementedError

    def loss(self, net: nn.Module, batch: list[int], epoch: int, optimizer: torch.optim.Optimizer
             ) -> tuple[torch.Tensor, float]:
        """The loss of a batch, and the figure the progress bar averages."""
        raise NotImplementedError

    def epoch_scores(self, epoch: int, started: float, train_figure: float) -> dict:
        """Validation scores after ``epoch`` epochs, with the epoch's number, its training figure and its seconds
        since ``started`` (a ``time.time()``; validation included)."""
        raise NotImplementedError

    def improved(self, scores: dict, best: dict | None) -> bool:
        raise NotImplementedError

    def report(self, epoch: int, scores: dict, improved: bool) -> str:
        raise NotImplementedError

    def config(self, extra: dict | None = None) -> dict:
        """The JSON config shipped with the weights."""
        raise NotImplementedError

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.model.parameters()), "lr": self.cfg.lr}]

    @property
    def total_epochs(self) -> int:
        return self.cfg.epochs

    def start_epoch(self, epoch: int, optimizer: torch.optim.Optimizer, rank: int, world: int) -> None:
        """Called before an epoch's first step."""

    def epoch_batches(self, epoch: int, generator: torch.Generator, rank: int, world: int, steps: int) -> list:
        """This rank's batches of rows of similar length; also draws which rows are mirrored."""
        batches = make_batches(self.train_rows(generator), self.lengths, self.cfg.batch_size, generator)
        self.flips = (torch.rand(len(self.lengths), generator=generator) < 0.5).tolist() if self.cfg.flip_augment \
            else None
        return batches[rank::world][:steps]

    def batch_flips(self, batch: Sequence[int]) -> list[bool] | None:
        return [self.flips[r] for r in batch] if self.flips else None

    def synced_params(self, epoch: int) -> list[nn.Parameter]:
        """Parameters whose gradients DistributedDataParallel does not average."""
        return []

    def clipped_params(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def scheduled(self, epoch: int) -> bool:
        """Whether the cosine schedule sets the learning rate in ``epoch``."""
        return True

    def epoch_label(self, epoch: int) -> str:
        return ""

    def postfix(self, mean: float, optimizer: torch.optim.Optimizer, epoch: int) -> dict[str, str]:
        return {"loss": f"{mean:.3f}"}

    def weights(self) -> nn.Module | dict[str, torch.Tensor]:
        return self.model


# ---------------------------------------------------------------- the loop


class Run:
    """The optimizer, schedule and progress of one training run, and its checkpoints."""

    def __init__(self, task: Task, out: Path, rank: int, world: int):
        self.task, self.cfg, self.out, self.rank, self.world = task, task.cfg, out, rank, world
        self.optimizer = torch.optim.Adam(task.param_groups(), weight_decay=self.cfg.weight_decay)
        self.steps_per_epoch = len(make_batches(task.train_rows(torch.Generator()), task.lengths, self.cfg.batch_size,
                                                torch.Generator())) // world  # equal on every rank
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.cfg.min_lr_ratio, self.steps_per_epoch * self.cfg.epochs))
        self.epoch, self.step_in_epoch, self.history, self.best = 0, 0, [], None

    def restore(self, last: Path) -> None:
        state = load_state(last)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.history, self.best = state["history"], state["best"]
        if self.rank == 0:
            print(f"resumed from {last} at epoch {self.epoch + 1}, step {self.step_in_epoch}")

    def save_last(self, epoch: int, step: int) -> None:
        if self.rank != 0:
            return
        with atomic_directory(self.out / "last") as tmp:
            save_checkpoint(tmp, self.task.weights(), self.task.config(), self.task.extra_files)
            save_state(tmp, {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                             "rng": torch.get_rng_state(), "epoch": epoch, "step_in_epoch": step,
                             "history": self.history, "best": self.best})

    def train(self) -> None:
        task, net = self.task, self.task.model
        if self.world > 1:
            net = nn.parallel.DistributedDataParallel(net)
        while self.epoch < task.total_epochs:
            gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.epoch)  # the order depends on nothing else
            if self.step_in_epoch == 0:
                task.start_epoch(self.epoch, self.optimizer, self.rank, self.world)
            batches = task.epoch_batches(self.epoch, gen, self.rank, self.world, self.steps_per_epoch)
            started = time.time()
            train_figure = self.train_epoch(net, batches)
            self.step_in_epoch = 0
            self.epoch += 1
            if self.rank == 0:
                self.validate(train_figure, started)
            self.save_last(self.epoch, 0)
            barrier(self.world)

    def train_epoch(self, net: nn.Module, batches: list) -> float:
        """Train on this epoch's remaining batches; returns the mean figure (loss or reward)."""
        task, optimizer, epoch = self.task, self.optimizer, self.epoch
        net.train()
        seen, total = 0, 0.0
        bar = tqdm(total=len(batches), initial=self.step_in_epoch, disable=self.rank != 0, unit="batch",
                   desc=f"epoch {epoch + 1}/{task.total_epochs}{task.epoch_label(epoch)}")
        for step in range(self.step_in_epoch, len(batches)):
            loss, value = task.loss(net, batches[step], epoch, optimizer)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(task.synced_params(epoch), self.world)
            nn.utils.clip_grad_norm_(task.clipped_params(), self.cfg.clip_norm)
            optimizer.step()
            if task.scheduled(epoch):
                self.scheduler.step()
            total, seen = total + value, seen + 1
            bar.update(1)
            bar.set_postfix(task.postfix(total / seen, optimizer, epoch))
            if self.cfg.save_every and (step + 1) % self.cfg.save_every == 0 and step + 1 < len(batches):
                self.save_last(epoch, step + 1)
        bar.close()
        return total / max(seen, 1)

    def validate(self, train_figure: float, started: float) -> None:
        """Score the epoch just trained; a new best is saved to ``best/``."""
        scores = self.task.epoch_scores(self.epoch, started, train_figure)
        self.history.append(scores)
        improved = self.task.improved(scores, self.best)
        print(self.task.report(self.epoch, scores, improved))
        if improved:
            self.best = scores
            with atomic_directory(self.out / "best") as tmp:
                save_checkpoint(tmp, self.task.weights(), self.task.config({"validation": scores}),
                                self.task.extra_files)


def fit(task: Task, resume: bool = False, overwrite: bool = False) -> dict:
    """Train ``task``; returns the best validation scores. Writes ``best/`` and ``last/`` under ``task.cfg.out``,
    refusing to replace a finished run there unless ``overwrite``; ``resume`` continues from ``last/``."""
    cfg = task.cfg
    rank, world = dist_setup()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    last = existing_checkpoint(out / "last") if resume else None
    saved = json.loads((last / "config.json").read_text())["training"] if last else None
    check_run_folder(out, saved, cfg, task.architecture, resume, overwrite)
    if resume and last is None and rank == 0:
        print(f"--resume: no checkpoint under {out / 'last'}; starting from scratch")
    seed_everything(cfg.seed)
    task.build(last, rank, world)
    run = Run(task, out, rank, world)
    if last is not None:
        run.restore(last)
    run.train()
    if world > 1:
        dist.destroy_process_group()
    return run.best or {}
