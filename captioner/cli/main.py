"""Command line: ``captioner COMMAND``, each command a module of this package. Run ``captioner COMMAND --help``.

The top parser, dispatch and the one-line errors. Settings and their ranges come from the config dataclasses
(:mod:`captioner.settings`), the work from the library, and every file read or written from
:mod:`captioner.cli.files`. Only the command that runs builds its options (importing what they name), so
``captioner --version`` and ``captioner --help`` load no torch.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import NoReturn, Sequence

from .. import __version__
from .common import fail

# name: (module of this package, its function that adds the command's options, the summary `captioner --help` lists)
COMMANDS = {
    "caption": ("caption", "configure", "caption images"),
    "train": ("train", "configure", "train a caption model"),
    "eval": ("evaluate", "configure", "score captions with the coco-caption metrics"),
    "ask": ("ask", "configure", "answer questions about an image"),
    "train-vqa": ("train", "configure", "train a VQA model"),
    "app": ("serve", "configure", "serve the demo app (Gradio) on this computer"),
    "questions": ("recipe", "configure_questions", "generate VQA training questions from training captions"),
    "atlas": ("recipe", "configure_atlas", "map what each cell of caption weights tracks (their cells.json)"),
    "calibrate": ("recipe", "configure_calibrate", "calibrate the 'not sure' thresholds of weights on dev data"),
    "fit-choices": ("recipe", "configure_fit_choices", "fit the multiple-choice rule of VQA weights"),
    "lm": ("lm", "configure", "a character-level language model: train, sample, eval, atlas"),
    "concepts": ("concepts", "configure", "concept detectors learnt from captions: train, eval"),
}


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr ('captioner: error: ...', exit code 2), like every
    other error of the command, rather than a usage block followed by the message."""

    def error(self, message: str) -> NoReturn:
        self.exit(fail(message, 2))


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``captioner`` parser, with the options of ``commands`` (default: every command); the others are only
    listed, with their summaries."""
    parser = _Parser(
        prog="captioner",
        description=(
            "Image captioning and visual question answering: a pretrained CNN encoder and an LSTM decoder, "
            "offline on the CPU."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"captioner {__version__}", help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, configure, summary) in COMMANDS.items():
        command = sub.add_parser(name, help=summary)
        if commands is None or name in commands:
            getattr(import_module(f".{module}", __package__), configure)(command, name)
        command.add_argument(
            "--quiet",
            "-q",
            action="store_true",
            help="no progress bars; warnings and errors still print (default: off)",
        )
    return parser


def _named(argv: Sequence[str]) -> list[str]:
    """The command that ``argv`` runs (the top parser takes only options before it), as a list: none or one."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return [first] if first in COMMANDS else []


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_named(argv)).parse_args(argv)
    args.argv = argv  # what a step that writes into weights records of itself (captioner.cli.recipe)
    from ..progress import show_progress

    show_progress(not args.quiet)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except OSError as e:  # a file that cannot be read or written: no permission, a folder, a full disk
        return fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))


if __name__ == "__main__":
    sys.exit(main())
