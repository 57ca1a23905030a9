"""``captioner lm train | sample | eval | atlas``: the character-level language model from the command line.

Registered by :func:`add_lm` in :func:`captioner.cli.main.build_parser`; the work is the library's
(:mod:`captioner.charlm`, :mod:`captioner.train.lm`, :mod:`captioner.lecture.charcells`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..charlm import SampleConfig, score_text
from ..data.text import read_documents, split_documents
from ..io import write_json
from ..lecture.charcells import build_atlas, summary
from ..lecture.charviews import CellRef, activations, draw_png
from ..pretrained import DEFAULT, LoadedLM, load_lm
from ..schema import ATLAS_FILE
from ..settings import add_options, from_args, number
from ..train.lm import LM_RUN_OPTIONS, LMTrainConfig, train_lm

FLUSH_SECONDS = 0.05  # lm sample shows what it has drawn at least this often, and at every line end
WEIGHTS_HELP = f"a character-model entry name or weights folder such as runs/lm/best (default: {DEFAULT['lm']})"
TRAIN_OPTIONS = (
    "text",
    "val_fraction",
    "cell",
    "num_layers",
    "hidden_dim",
    "embed_dim",
    "dropout",
    "bptt",
    "batches",
    *LM_RUN_OPTIONS,
    "epoch_chars",
    "sample_every",
    "sample_length",
    "prime",
    "val_streams",
)


def _fail(message: str, code: int = 2) -> int:
    print(f"captioner: error: {message}", file=sys.stderr)
    return code


def _note(line: str) -> None:
    print(f"captioner: {line}", file=sys.stderr)


def configure(lm: argparse.ArgumentParser, name: str) -> None:
    """The ``lm`` command's four subcommands."""
    lm.description = (
        "The lecture's character-level language model: train one on any UTF-8 text by truncated backpropagation "
        "through time, sample from it character by character, score text in nats and bits per character, and map "
        "its interpretable cells. Run `captioner lm COMMAND --help`."
    )
    commands = lm.add_subparsers(dest="lm_command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_sample(commands)
    _add_eval(commands)
    _add_atlas(commands)
    for command in commands.choices.values():  # as every command takes it (SUPPRESS: `lm -q train` works too)
        command.add_argument(
            "--quiet",
            "-q",
            action="store_true",
            default=argparse.SUPPRESS,
            help="no progress bars; warnings and errors still print (default: off)",
        )


def _add_train(commands) -> None:
    p = commands.add_parser("train", help=LMTrainConfig.SUMMARY, description=LMTrainConfig.DESCRIPTION)
    add_options(p, LMTrainConfig, TRAIN_OPTIONS)
    p.add_argument("--resume", action="store_true", help="continue OUT/last after an interruption (default: off)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run already in OUT (default: off)")
    p.set_defaults(func=_cmd_train)


def _add_sample(commands) -> None:
    p = commands.add_parser(
        "sample",
        help="draw text from a character model, streamed as it is drawn",
        description="Print the prime, then characters drawn one at a time from the model's "
        "softmax at a temperature, as they come. A seed repeats a sample.",
    )
    p.add_argument("--weights", help=WEIGHTS_HELP)
    add_options(p, SampleConfig)
    p.add_argument("--verbose", "-v", action="store_true", help="report characters per second on stderr (default: off)")
    p.set_defaults(func=_cmd_sample)


def _add_eval(commands) -> None:
    p = commands.add_parser(
        "eval",
        help="score text in nats and bits per character",
        description=(
            "Loss of the model on the text of FILE_OR_DIR (all of it, in order), in nats per character and bits per "
            "character, read with the state carried from character to character."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="UTF-8 text files or folders of them")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument(
        "--held-out",
        type=number(float, low=0, below=1),
        default=0.0,
        metavar="F",
        help="score only the last F of the text, as `lm train --val-fraction F` held it out (default: 0, "
        "the whole text)",
    )
    p.add_argument(
        "--streams",
        type=number(int, low=1, high=4096),
        default=16,
        help="read the text as this many contiguous pieces side by side, each from a zero state; 1 "
        "reads it as one sequence, slower (default: 16)",
    )
    p.add_argument("--json", metavar="OUT", help="also write the scores here (default: none)")
    p.add_argument(
        "--threads",
        type=number(int, low=0, high=1024),
        default=0,
        help="torch CPU threads (0: torch's default; 1 is faster on a busy machine)",
    )
    p.set_defaults(func=_cmd_eval)


def _add_atlas(commands) -> None:
    p = commands.add_parser(
        "atlas",
        help="find the interpretable cells (quote, comment, column, depth, if)",
        description=(
            "Correlate every cell (h and c of every layer) with signals computed from the text: quote, comment, "
            "column, depth, if, digit, upper, paren (docs/rnn.md defines them), and list the best cells of each."
        ),
    )
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument(
        "--text",
        action="append",
        metavar="FILE_OR_DIR",
        help="the text to read; repeat for several "
        "(default: the held-out text the weights were validated on, from their config)",
    )
    p.add_argument(
        "--max-chars",
        type=number(int, low=100, high=10**8),
        default=200_000,
        help="read at most this many characters (default: 200000)",
    )
    p.add_argument(
        "--streams",
        type=number(int, low=1, high=4096),
        default=32,
        help="contiguous pieces read side by side (default: 32)",
    )
    p.add_argument("--json", metavar="OUT", help="write the atlas here (default: none)")
    p.add_argument(
        "--write", action="store_true", help=f"write it into the weights folder as {ATLAS_FILE} (default: off)"
    )
    p.add_argument("--png", metavar="OUT", help="also draw the text coloured by the best cell of --signal")
    p.add_argument("--signal", default="quote", help="the signal --png draws (default: quote)")
    p.set_defaults(func=_cmd_atlas)


def _cmd_train(args) -> int:
    try:
        cfg = from_args(LMTrainConfig, args)
        best = train_lm(cfg, resume=args.resume, overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e))
    if best:
        print(json.dumps({k: best[k] for k in ("epoch", "val_loss", "train_loss", "steps") if k in best}))
    return 0


def _cmd_sample(args) -> int:
    try:
        cfg = from_args(SampleConfig, args)
        lm = load_lm(args.weights)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e))
    import torch

    from ..charlm import sample

    # One character at a time is too small a job to split across threads: on the 2-core test machine, under load,
    # one thread drew 568 characters/s and two 37.
    torch.set_num_threads(1)
    started, count = time.perf_counter(), -1
    flushed = started
    for piece in sample(lm.model, lm.vocab, cfg):
        sys.stdout.write(piece)
        count += 1
        now = time.perf_counter()
        if piece == "\n" or now - flushed > FLUSH_SECONDS:  # streamed, without a system call per character
            sys.stdout.flush()
            flushed = now
    sys.stdout.write("\n")
    sys.stdout.flush()
    if args.verbose:
        seconds = time.perf_counter() - started
        _note(f"{count} characters in {seconds:.2f} s ({count / max(seconds, 1e-9):,.0f} characters/s)")
    return 0


def _held_out(paths, fraction: float) -> str:
    documents = read_documents(paths, note=_note)
    return split_documents(documents, fraction)[1] if fraction else "".join(d.text for d in documents)


def _cmd_eval(args) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        lm = load_lm(args.weights)
        text = _held_out(args.paths, args.held_out)
        started = time.perf_counter()
        score = score_text(lm.model, lm.vocab, text, args.streams, progress=True)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e))
    seconds = time.perf_counter() - started
    if score.unknown:
        _note(f"warning: {score.unknown} character(s) the model never saw, scored as U+FFFD")
    print(
        f"{score.nats:.4f} nats/char, {score.bits:.4f} bits/char over {score.chars:,} characters "
        f"({score.chars / max(seconds, 1e-9):,.0f} characters/s)"
    )
    if args.json:
        write_json(
            args.json,
            {
                **score.as_dict(),
                "weights": str(args.weights or DEFAULT["lm"]),
                "paths": args.paths,
                "held_out": args.held_out,
                "streams": args.streams,
            },
        )
    return 0


def _atlas_text(lm: LoadedLM, given: list[str] | None, max_chars: int) -> tuple[str, str]:
    """The text the atlas reads, and words for where it came from."""
    if given:
        return _held_out(given, 0.0)[:max_chars], " ".join(given)
    training = json.loads((lm.path / "config.json").read_text()).get("training", {})
    if not training.get("text") or not training.get("val_fraction"):
        raise ValueError("these weights name no held-out text: give --text FILE_OR_DIR")
    try:
        return _held_out(training["text"], training["val_fraction"])[
            :max_chars
        ], f"the held-out {training['val_fraction']:g} of {' '.join(training['text'])}"
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e} (the weights' training text); give --text FILE_OR_DIR") from None


def _cmd_atlas(args) -> int:
    import torch

    torch.set_num_threads(1)  # a step at a time, as sampling: one thread is faster (and much faster under load)
    try:
        lm = load_lm(args.weights)
        text, source = _atlas_text(lm, args.text, args.max_chars)
        atlas = build_atlas(lm.model, lm.vocab, text, args.streams, progress=True, source=source)
        if args.png:
            ref = CellRef.best_for(atlas, args.signal)
            excerpt = text[:1200]
            draw_png(
                args.png,
                excerpt,
                activations(lm.model, lm.vocab, excerpt, ref),
                f"{ref.words()}: best {args.signal} cell; red high, blue low",
            )
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e))
    print("\n".join(summary(atlas)))
    for out in ([args.json] if args.json else []) + ([str(Path(lm.path) / ATLAS_FILE)] if args.write else []):
        write_json(out, atlas, indent=None)
        _note(f"wrote {out}")
    return 0
