"""``captioner eval``: score captions with the coco-caption metrics, from a results file or by captioning first."""

from __future__ import annotations

import argparse
import sys

from ..options import DecodeConfig
from ..settings import add_options
from .common import add_batch_size, add_model_options, captioner, decoding, decoding_default, fail


def configure(p: argparse.ArgumentParser, name: str) -> None:
    p.description = (
        "Score captions exactly as the coco-caption toolkit (pycocoevalcap) does: BLEU-1..4, METEOR, ROUGE-L, "
        "CIDEr-D and SPICE (when its models are installed). Give a results file (COCO results JSON, or JSON "
        "lines of image_id/caption as `captioner caption` writes them) and references, or --weights to caption "
        "a dataset split first. Without Java, tokenization uses the Python PTB tokenizer (same tokens) and "
        "METEOR and SPICE are skipped."
    )
    p.add_argument(
        "results", nargs="?", metavar="RESULTS", help="COCO results JSON or JSON lines (or none, with --weights)"
    )
    refs = p.add_mutually_exclusive_group()
    refs.add_argument("--coco-annotations", metavar="FILE", help="COCO captions annotation JSON (default: none)")
    refs.add_argument("--flickr8k-tokens", metavar="FILE", help="Flickr8k.token.txt (default: none)")
    p.add_argument(
        "--split-list",
        metavar="FILE",
        help="with --flickr8k-tokens: score only the images listed (default: all images)",
    )
    p.add_argument(
        "--data",
        default="flickr8k",
        help="with --weights: dataset format, flickr8k, coco, karpathy or imagefolder (default: flickr8k)",
    )
    p.add_argument("--root", help="with --weights: dataset folder (images root for karpathy; default: none)")
    p.add_argument("--split", default="dev", help="with --weights: dataset split (default: dev)")
    p.add_argument(
        "--annotations",
        help="COCO captions JSON or Karpathy dataset_*.json, for --data coco/karpathy "
        "(default: ROOT/annotations/captions_SPLIT.json for coco)",
    )
    methods = p.add_mutually_exclusive_group()
    methods.add_argument("--greedy", action="store_true", help="greedy decoding (default: off, beam search)")
    add_options(methods, DecodeConfig, ["beam_size"], defaults=decoding_default)
    add_batch_size(p)
    p.add_argument("--metrics", help="comma-separated subset of Bleu,METEOR,ROUGE_L,CIDEr,SPICE (default: all)")
    p.add_argument(
        "--tokenizer",
        choices=["auto", "java", "python"],
        default="auto",
        help="PTB tokenizer: pycocoevalcap's Java one, the Python port, or Java when installed (default: auto)",
    )
    p.add_argument(
        "--json",
        metavar="OUT",
        help="write corpus scores and what was evaluated here (default: none; missing folders are created)",
    )
    p.add_argument(
        "--csv", metavar="OUT", help="write per-image scores here (default: none; missing folders are created)"
    )
    add_model_options(
        p,
        "caption --data/--root/--split with these weights first (a weights entry name or folder; "
        "default: none, score RESULTS)",
    )
    p.set_defaults(func=run)


def _misuse(args: argparse.Namespace) -> str | None:
    """What is wrong with the options together, or None."""
    from ..metrics.ptb import java_available

    if bool(args.results) == bool(args.weights):
        return "eval: give either RESULTS or --weights"
    if args.results and not (args.coco_annotations or args.flickr8k_tokens):
        return "eval: RESULTS needs --coco-annotations or --flickr8k-tokens"
    if args.weights and not args.root:
        return "eval: --weights needs --root (and --data, --split)"
    if args.tokenizer == "java" and not java_available():
        return "--tokenizer java: Java not found"
    return None


def _caption_split(args: argparse.Namespace):
    """Caption --data/--root/--split with --weights: (results, references, the decoding used)."""
    from ..data.datasets import load_caption_dataset
    from .files import one_field

    model = captioner(args)
    used = decoding(args, model, "greedy" if args.greedy else "beam" if args.beam_size else None)
    items = load_caption_dataset(args.data, args.root, args.split, args.annotations)
    results = {}
    for item, nbest, error in model.caption_files(items, used, args.batch_size, lambda item: item.path):
        if error:
            print(f"captioner: skipped {one_field(error)}", file=sys.stderr)
        else:
            results[item.image_id] = nbest[0].text
    return results, {it.image_id: it.captions for it in items if it.captions}, used


def run(args: argparse.Namespace) -> int:
    from ..metrics.captions import check_coverage, evaluate_captions
    from ..metrics.ptb import java_available
    from .files import check_output, read_references, read_results, write_per_image_csv, write_scores_json

    misuse = _misuse(args)
    if misuse:
        return fail(misuse, 2)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    used = None
    try:
        inputs = [p for p in (args.results, args.coco_annotations, args.flickr8k_tokens, args.split_list) if p]
        for path, other in ((args.json, args.csv), (args.csv, args.json)):
            check_output(path, inputs + ([other] if other else []))
        if args.weights:
            results, references, used = _caption_split(args)
        else:
            results = read_results(args.results)
            references = read_references(args.coco_annotations, args.flickr8k_tokens, args.split_list)
        for warning in check_coverage(results, references):
            print(f"captioner: warning: {warning}", file=sys.stderr)
        scores = evaluate_captions(results, references, metrics, args.tokenizer)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e), 2)
    if not java_available():
        print(
            "captioner: Java not found: tokenized with the Python PTB tokenizer (same tokens); "
            "METEOR and SPICE skipped",
            file=sys.stderr,
        )
    else:
        for note in scores.skipped:
            print(f"captioner: skipped {note}", file=sys.stderr)
    n_refs = sum(len(references[i]) for i in scores.image_ids)
    print(f"{len(scores.image_ids)} images, {n_refs} reference captions, tokenizer: {scores.tokenizer}")
    for name, value in scores.corpus.items():
        print(f"{name:<8} {value:8.4f}")
    if args.json:
        write_scores_json(
            args.json,
            scores,
            n_refs,
            metrics,
            results=args.results,
            checkpoint=args.weights,
            references=args.coco_annotations or args.flickr8k_tokens or args.root,
            split=args.split_list or (args.split if args.weights else None),
            decoding=used,
        )
    if args.csv:
        write_per_image_csv(args.csv, scores, results)
    return 0
