"""``captioner caption``: caption image files, folders or glob patterns."""

from __future__ import annotations

import argparse
import sys

from ..options import DecodeConfig
from ..settings import add_options
from .common import (
    OUTPUT_HELP,
    SAMPLING,
    add_batch_size,
    add_model_options,
    captioner,
    decoding,
    decoding_default,
    fail,
)

OUTPUT_FORMATS = ("text", "jsonl", "csv", "coco")  # what --format writes


def configure(p: argparse.ArgumentParser, name: str) -> None:
    p.description = (
        "Caption image files, folders or glob patterns with the shipped (or given) weights. "
        "Unreadable files, and folders without images, are reported on stderr and skipped; the exit code is 1 "
        "if any failed."
    )
    p.add_argument("paths", nargs="+", metavar="PATHS", help="image files, folders (searched recursively) or globs")
    methods = p.add_mutually_exclusive_group()
    methods.add_argument("--greedy", action="store_true", help="greedy decoding (default: off, beam search)")
    methods.add_argument("--sample", action="store_true", help="sample instead of beam search (default: off)")
    add_options(methods, DecodeConfig, ["beam_size"], defaults=decoding_default)
    add_options(p, DecodeConfig, SAMPLING, defaults=decoding_default)
    add_batch_size(p)
    p.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="text",
        help="text: 'file<TAB>caption', '(not sure)' after a caption below the weights' calibrated "
        "confidence or of an image wider or taller than 3 to 1 (said on stderr); jsonl/csv: one record per "
        "caption, with its confidence and sure (jsonl: and that warning); coco: results JSON (default: text)",
    )
    p.add_argument("--output", "-o", help=OUTPUT_HELP)
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..images import expand_paths
    from .files import CaptionWriter, check_output, one_field, output

    method = "sample" if args.sample else "greedy" if args.greedy else "beam" if args.beam_size else None
    skipped: list = []  # files a folder scan found but cannot read (HEIC, broken links)
    try:
        found = [(pattern, expand_paths([pattern], skipped)) for pattern in args.paths]  # only an empty folder
    except ValueError as e:  # finds nothing; an empty pattern is refused
        return fail(str(e), 2)
    paths, empty = [p for _, files in found for p in files], [pattern for pattern, files in found if not files]
    for path, why in skipped:
        print(f"captioner: skipped {one_field(str(path))}: {why}", file=sys.stderr)
    if not paths:
        return fail(f"no image files in {', '.join(empty)}")
    try:
        check_output(args.output, paths)
        model = captioner(args)
        cfg = decoding(args, model, method)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e), 2)
    for folder in empty:
        print(f"captioner: skipped {folder}: no image files in this folder", file=sys.stderr)
    failed = 0
    with output(args.output) as out:
        writer = CaptionWriter(out, args.format, cfg.n_best, sampled=cfg.method == "sample")
        for path, nbest, error in model.caption_files(paths, cfg, args.batch_size):
            if error:
                failed += 1
                print(f"captioner: skipped {one_field(error)}", file=sys.stderr)
            else:
                writer.write(path, nbest)
                if nbest[0].warning:  # a panorama: its caption is marked not sure, and this says why
                    print(f"captioner: warning: {one_field(str(path))}: {nbest[0].warning}", file=sys.stderr)
        writer.close()
    if failed:
        print(f"captioner: {failed} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return 1 if failed or empty or skipped else 0
