"""``captioner concepts train | eval | show``: the concept detectors (:mod:`captioner.concepts`) from the command line.

The work is the library's: :mod:`captioner.train.concepts` trains and scores them, :mod:`captioner.look` answers
with them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from ..concepts import Concepts
from ..data.datasets import CAPTION_DATASETS, DatasetSpec, load_caption_dataset
from ..io import write_json
from ..pretrained import weights_root
from ..settings import add_options, from_args
from ..train.concepts import ConceptTrainConfig, evaluate_concepts, train_concepts
from .common import fail
from .files import check_output

# the training settings that concept detectors use (not a caption run's flip, word counts or dev split)
TRAIN_OPTIONS = tuple(
    f.name for f in fields(ConceptTrainConfig) if f.name not in ("val_split", "flip_augment", "min_count", "max_length")
)
WEIGHTS_HELP = "a folder of concept weights such as runs/concepts/best (default: the shipped weights/concepts)"


def configure(concepts: argparse.ArgumentParser, name: str) -> None:
    """The ``concepts`` command's subcommands."""
    concepts.description = (
        "Concept detectors learnt from captions: which objects, colours, counts, actions and scenes a photo "
        "holds, and where. `ask` answers existence and colour questions with them. Run `captioner concepts "
        "COMMAND --help`."
    )
    commands = concepts.add_subparsers(dest="concepts_command", required=True, metavar="COMMAND")
    p = commands.add_parser("train", help="train concept detectors", description=ConceptTrainConfig.DESCRIPTION)
    add_options(p, ConceptTrainConfig, TRAIN_OPTIONS)
    p.add_argument("--resume", action="store_true", help="continue OUT/last after an interruption (default: off)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run already in OUT (default: off)")
    p.set_defaults(func=_cmd_train)
    p = commands.add_parser(
        "eval",
        help="score concept detectors on a dev split",
        description="Mean average precision against the concepts the captions of a dev split name, by word class, "
        "and the existence rule on POPE-style questions (3 objects named by 2 or more captions, 3 named by none, "
        "per image).",
    )
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument(
        "--data", required=True, metavar="FORMAT:FOLDER", help=f"a captioned dataset ({', '.join(CAPTION_DATASETS)})"
    )
    p.add_argument("--split", default="dev", help="its split to score (default: dev)")
    p.add_argument("--json", metavar="FILE", help="also write the scores to FILE as JSON (default: none)")
    p.set_defaults(func=_cmd_eval)
    p = commands.add_parser(
        "show",
        help="list the concepts detected in images",
        description="For each image, the concepts the detectors find most likely, each with its probability and "
        "the cell of the encoder's grid (row, column from the top left) where it fires most.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--top", type=int, default=10, help="concepts listed per image, 1-100 (default: 10)")
    p.set_defaults(func=_cmd_show)
    for command in commands.choices.values():
        command.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bars")


def _load(weights: str | None) -> Concepts:
    return Concepts.load(weights or weights_root() / "concepts")


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        best = train_concepts(from_args(ConceptTrainConfig, args), resume=args.resume, overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e), 2)
    if best:
        print(json.dumps({k: best[k] for k in ("epoch", "mAP", "by_class") if k in best}))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    try:
        check_output(args.json)
        spec = DatasetSpec.parse(args.data)
        images = load_caption_dataset(spec.name, spec.root, args.split)
        scores = evaluate_concepts(_load(args.weights), images)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e), 2)
    print(f"mean average precision over {scores['concepts']} concepts: {scores['mAP']:.4f}")
    for word_class, s in scores["by_class"].items():
        print(f"  {word_class:8s} {s['mAP']:.4f}  ({s['concepts']} concepts)")
    pope = scores.get("pope")
    if pope:
        print(
            f"existence, POPE-style ({pope['questions']} questions): accuracy {pope['accuracy']:.4f}, "
            f"F1 {pope['f1']:.4f}, yes-ratio {pope['yes_ratio']:.4f}"
        )
    if args.json:
        write_json(Path(args.json), scores)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    if not 1 <= args.top <= 100:
        return fail(f"--top must be from 1 to 100, not {args.top}", 2)
    try:
        concepts = _load(args.weights)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e), 2)
    from ..encoder import build_encoder
    from ..features import encode_images
    from ..images import BadImageError

    encoder, bad = build_encoder(concepts.encoder), 0
    for path in args.images:
        try:
            features = encode_images(encoder, [path])
        except BadImageError as e:
            print(f"captioner: {e}", file=sys.stderr)
            bad += 1
            continue
        p, z = concepts.detect(features)
        side = round(z.shape[1] ** 0.5)
        found = []
        for k in p[0].argsort(descending=True)[: args.top].tolist():
            region = int(z[0, :, k].argmax())
            found.append(f"{concepts.vocab.words[k]} {p[0, k]:.2f} ({region // side},{region % side})")
        print(f"{path}\t{', '.join(found)}")
    return 1 if bad else 0
