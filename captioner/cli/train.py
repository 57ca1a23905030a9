"""``captioner train`` and ``captioner train-vqa``: one option per setting of the task's training config."""

from __future__ import annotations

import argparse
import json

from ..settings import add_options, from_args
from .common import fail

REPORTED = {
    "train": ("epoch", "loss", "Bleu_4", "CIDEr", "datasets"),  # what each prints of its best epoch
    "train-vqa": ("epoch", "accuracy", "datasets", "train_loss"),
}


def _task(name: str):
    """The training config and the training function of command ``name``."""
    if name == "train":
        from ..train.caption import TrainConfig, train

        return TrainConfig, train
    from ..train.vqa import VQATrainConfig, train_vqa

    return VQATrainConfig, train_vqa


def configure(p: argparse.ArgumentParser, name: str) -> None:
    config_cls, _ = _task(name)
    p.description = config_cls.DESCRIPTION
    add_options(p, config_cls)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last after an interruption, with the same settings (default: off)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a finished run already in OUT (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train with the config the options give; print the best validation scores as JSON."""
    config_cls, train = _task(args.command)
    try:
        best = train(from_args(config_cls, args), resume=args.resume, overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e), 2)
    if best:
        print(json.dumps({k: best[k] for k in REPORTED[args.command] if k in best}))
    return 0
