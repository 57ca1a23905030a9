"""Command line: ``captioner caption | train | eval | ask | train-vqa``. Run ``captioner CMD --help``."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Sequence, TextIO

from tqdm import tqdm


def _fail(message: str, code: int = 1) -> int:
    print(f"captioner: error: {message}", file=sys.stderr)
    return code


def _open_output(path: str | None) -> TextIO:
    return open(path, "w", newline="", encoding="utf-8") if path else sys.stdout


# ---------------------------------------------------------------- caption


def _add_caption(sub) -> None:
    p = sub.add_parser("caption", help="caption images", description=(
        "Caption image files, folders or glob patterns with the shipped (or given) weights. "
        "Unreadable files are reported on stderr and skipped; the exit code is 1 if any failed."))
    p.add_argument("paths", nargs="+", metavar="PATHS", help="image files, folders (searched recursively) or globs")
    p.add_argument("--weights", help="weights folder (default: the shipped weights/)")
    p.add_argument("--encoder-weights", help="local file of encoder weights, for encoders that would download them")
    p.add_argument("--beam", type=int, metavar="N", help="beam size (default 3)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding")
    p.add_argument("--sample", action="store_true", help="sample instead of beam search")
    p.add_argument("--temperature", type=float, help="sampling temperature (default 1.0)")
    p.add_argument("--top-k", type=int, help="sample only from the K most likely words")
    p.add_argument("--top-p", type=float, help="sample only from the smallest word set with this probability mass")
    p.add_argument("--seed", type=int, help="random seed for --sample")
    p.add_argument("--n-best", type=int, help="captions per image (≤ beam size; with --sample, independent samples)")
    p.add_argument("--length-penalty", type=float, help="rank beams by log-prob / length ** this (default 0)")
    p.add_argument("--min-length", type=int, help="at least this many words")
    p.add_argument("--max-length", type=int, help="at most this many words")
    p.add_argument("--no-repeat-ngram", type=int, help="never repeat an n-gram of this size")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--format", choices=["text", "jsonl", "csv", "coco"], default="text",
                   help="text: 'file<TAB>caption'; jsonl/csv: one record per caption; coco: results JSON")
    p.add_argument("--output", "-o", help="write here instead of stdout")
    p.set_defaults(func=_cmd_caption)


def _cmd_caption(args) -> int:
    from .data import BadImageError, expand_paths, image_id_from_filename, load_image
    from .features import batched
    from .pipeline import Captioner, decode_config

    if sum([args.sample, args.greedy, args.beam is not None]) > 1:
        return _fail("choose one of --beam, --greedy and --sample", 2)
    method = "sample" if args.sample else "greedy" if args.greedy else "beam" if args.beam else None
    try:
        model = Captioner.from_pretrained(args.weights, args.encoder_weights, load_vqa=False)
        cfg = decode_config(model.decoding, method=method, beam_size=args.beam, temperature=args.temperature,
                            top_k=args.top_k, top_p=args.top_p, seed=args.seed, n_best=args.n_best,
                            length_penalty=args.length_penalty, min_length=args.min_length,
                            max_length=args.max_length, no_repeat_ngram=args.no_repeat_ngram)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e), 2)
    paths = expand_paths(args.paths)
    failed, coco = 0, []
    out = _open_output(args.output)
    writer = csv.writer(out) if args.format == "csv" else None
    if writer:
        writer.writerow(["file", "image_id", "rank", "caption", "log_prob"])
    size = model.encoder.spec.image_size
    try:
        with tqdm(total=len(paths), desc="captioning", unit="img", file=sys.stderr) as bar:
            for chunk in batched(paths, args.batch_size):
                good, images = [], []
                for path in chunk:
                    try:
                        images.append(load_image(path, size_hint=size))
                        good.append(path)
                    except BadImageError as e:
                        failed += 1
                        tqdm.write(f"captioner: skipped {e}", file=sys.stderr)
                captions = model.caption_images(images, cfg) if images else []
                for path, nbest in zip(good, captions):
                    image_id = image_id_from_filename(path)
                    if args.format == "coco":
                        coco.append({"image_id": image_id, "caption": nbest[0].text})
                    elif args.format == "jsonl":
                        out.write(json.dumps({"file": str(path), "image_id": image_id, "caption": nbest[0].text,
                                              "log_prob": round(nbest[0].log_prob, 4),
                                              "n_best": [{"caption": c.text, "log_prob": round(c.log_prob, 4)}
                                                         for c in nbest]}) + "\n")
                    elif writer:
                        for rank, c in enumerate(nbest, 1):
                            writer.writerow([str(path), image_id, rank, c.text, f"{c.log_prob:.4f}"])
                    elif len(nbest) == 1:
                        out.write(f"{path}\t{nbest[0].text}\n")
                    else:
                        for rank, c in enumerate(nbest, 1):
                            out.write(f"{path}\t{rank}\t{c.log_prob:.3f}\t{c.text}\n")
                out.flush()
                bar.update(len(chunk))
        if args.format == "coco":
            json.dump(coco, out, indent=1)
            out.write("\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if failed:
        print(f"captioner: {failed} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------- train


def _add_train(sub) -> None:
    from .train import TrainConfig

    p = sub.add_parser("train", help="train a caption model", description=(
        "Train the caption decoder on cached encoder features. Writes OUT/best (best dev CIDEr) and OUT/last "
        "(for --resume). Run the same command under `torchrun --nproc_per_node N` for data parallelism."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    helps = {
        "data": "dataset format: flickr8k, coco or karpathy", "root": "dataset folder (images root for karpathy)",
        "annotations": "COCO captions JSON or Karpathy dataset_*.json", "out": "run folder",
        "encoder": "image encoder name", "encoder_weights": "local encoder weights file",
        "flip_augment": "also train on mirrored images", "min_count": "keep words seen this often",
        "max_length": "longest caption in words", "cell": "lstm or rnn",
        "image_input": "where the image enters: every_step, first_step or init_state",
        "save_every": "also checkpoint every N steps (0: each epoch)", "threads": "torch CPU threads (0: default)",
        "max_val_images": "validate on at most this many images (0: all)", "min_lr_ratio": "final lr / lr (cosine)",
        "clip_norm": "gradient-norm clipping",
    }
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=helps.get(f.name))
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, type=kind, default=f.default, help=helps.get(f.name, " "))
    p.add_argument("--resume", action="store_true", help="continue from OUT/last after an interruption")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .train import config_from_args, train

    try:
        best = train(config_from_args(args), resume=args.resume)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e), 2)
    if best:
        print(json.dumps({k: best[k] for k in ("epoch", "loss", "Bleu_4", "CIDEr") if k in best}))
    return 0


# ---------------------------------------------------------------- eval


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score captions with the coco-caption metrics")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    return _fail("eval: not available yet")


# ---------------------------------------------------------------- ask


def _add_ask(sub) -> None:
    p = sub.add_parser("ask", help="answer a question about an image")
    p.set_defaults(func=_cmd_ask)


def _cmd_ask(args) -> int:
    return _fail("ask: not available yet")


# ---------------------------------------------------------------- train-vqa


def _add_train_vqa(sub) -> None:
    p = sub.add_parser("train-vqa", help="train a VQA model")
    p.set_defaults(func=_cmd_train_vqa)


def _cmd_train_vqa(args) -> int:
    return _fail("train-vqa: not available yet")


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captioner", description=(
        "Image captioning and visual question answering: a pretrained CNN encoder and an LSTM decoder, "
        "offline on the CPU."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_caption, _add_train, _add_eval, _add_ask, _add_train_vqa):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
