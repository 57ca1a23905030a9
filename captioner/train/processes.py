"""The processes of a run (one, or several under ``torchrun``), their seeds, and the learning-rate schedule."""

from __future__ import annotations

import math
import os
import random
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


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
    for turn in [0, 1] if world > 1 else [0]:
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
