"""``captioner ask``: answer questions about an image, or (``--batch``) every row of a CSV of questions."""

from __future__ import annotations

import argparse
import sys

from .common import OUTPUT_HELP, WEIGHTS_HELP, add_model_options, fail, report, warn_unknown

DESCRIPTION = (
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
    "the best one is the predicted_answer."
)


def configure(p: argparse.ArgumentParser, name: str) -> None:
    from ..options import CHOICE_LIMITS, ESCAPE, SEPARATOR, TOP_ANSWERS
    from ..settings import number

    p.description = DESCRIPTION
    p.add_argument("image", nargs="?", metavar="IMAGE", help="image file (none with --batch)")
    p.add_argument(
        "questions",
        nargs="*",
        metavar="QUESTION",
        help="questions about the image, each quoted, or - to read them from stdin (none with --batch)",
    )
    p.add_argument(
        "--batch",
        metavar="QA.csv",
        help="CSV of questions with columns image_id,question (default: none, the QUESTIONs)",
    )
    p.add_argument(
        "--images", metavar="DIR", help="folder of the --batch images (default: none; required with --batch)"
    )
    p.add_argument("--output", "-o", help=OUTPUT_HELP)
    p.add_argument(
        "--choices",
        metavar="'A|B|...'",
        help=(
            f"candidate answers, separated by {SEPARATOR} ({ESCAPE + SEPARATOR} is a {SEPARATOR} inside one, "
            f"{ESCAPE * 2} a backslash), 2 to {CHOICE_LIMITS.max_choices} of them, all printed; answers outside the "
            "model's answer list are scored by the caption model (needs caption/ beside vqa/; default: none, the "
            "model's own answers)"
        ),
    )
    p.add_argument(
        "--top-k",
        type=number(int, low=1, high=1_000_000),
        default=TOP_ANSWERS,
        help=f"answers to print per question (default: {TOP_ANSWERS})",
    )
    add_model_options(p, WEIGHTS_HELP.replace("weights folder", "folder holding vqa/"))
    p.set_defaults(func=run)


def _misuse(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments together, or None."""
    if args.batch and (args.image or args.questions):
        return "give either IMAGE QUESTION... or --batch QA.csv, not both"
    if not args.batch and (args.image is None or not args.questions):
        return "give an IMAGE and a QUESTION (or several, or - to read them from stdin), or --batch QA.csv --images DIR"
    if "-" in args.questions and len(args.questions) > 1:
        return "give - alone, to read the questions from stdin, one a line"
    if args.batch and not args.images:
        return "--batch needs --images DIR, the folder of the images"
    if args.batch and args.choices is not None:
        return "with --batch, give each row's choices in a choices column"
    return None


def run(args: argparse.Namespace) -> int:
    from ..choices import parse_choices
    from ..pipeline import VQAPredictor
    from .batch import ask_batch
    from .files import CHOICES_COLUMN, check_output, read_question_rows

    misuse = _misuse(args)
    if misuse:
        return fail(misuse, 2)
    table = None
    if args.batch:  # read once, before the model: it may be a pipe (/dev/stdin), which reads only once
        try:
            table = read_question_rows(args.batch)
        except ValueError as e:
            return fail(str(e))
    try:
        check_output(args.output, [p for p in (args.image, args.batch) if p and p != "-"])
        args.choices = None if args.choices is None else parse_choices(args.choices)
        needed = args.choices is not None or table is not None and CHOICES_COLUMN in table.columns
        load = lambda words: VQAPredictor.from_pretrained(  # noqa: E731
            args.weights, args.encoder_weights, args.precision, words=words, runtime=args.runtime
        )
        try:  # the caption weights also colour things for colour questions (captioner.look), as in the app
            model = load(True)
        except ValueError as e:
            if needed or "caption weights" not in str(e):
                raise
            model = load(False)  # VQA weights alone
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e), 2)
    report(args, model)
    return ask_batch(args, model, table) if table is not None else _ask_questions(args, model)


def _answer_lines(model, answers: list[tuple[str, float]], choices: list[str] | None) -> list[str]:
    """A question's answers as printed, the top one marked when it is not sure."""
    from ..confidence import marked

    lines = [f"{answer}\t{p:.4f}" for answer, p in answers]
    if not choices:  # the threshold is calibrated on top answers over the answer list, not on choices
        lines[0] = marked(lines[0], model.sure(answers[0][1], answers[0][0]))
    return lines


def _ask_questions(args: argparse.Namespace, model) -> int:
    """The QUESTIONs (or stdin's lines) about IMAGE, each answered in turn; one question prints its answers alone."""
    from .files import one_field, output

    several = args.questions == ["-"] or len(args.questions) > 1
    if not several:
        try:
            model.question_ids(args.questions[0])  # a bad question fails before the image is read
        except ValueError as e:
            return fail(str(e))
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
                warn_unknown(model, question, where)
                out.write(f"{one_field(question)}\n" if several else "")
                out.writelines(f"{line}\n" for line in _answer_lines(model, answers, args.choices))
                out.write("\n" if several else "")
                out.flush()  # a conversation sees each answer as soon as it is known
    except ValueError as e:  # the image cannot be read (BadImageError)
        return fail(str(e))
    return 1 if failed else 0
