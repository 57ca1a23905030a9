"""``ask --batch``: every row of a CSV of questions answered, each image read once, rows given out in order.

The row bookkeeping of the command, on top of the library's :class:`captioner.pipeline.VQAPredictor`: which rows
share an image, which cannot be answered and why, and the order rows come out in.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterator, Sequence

from ..choices import parse_choices
from ..features import batched, image_batches
from ..images import images_by_stem
from ..pipeline import VQAPredictor
from .common import fail, warn_unknown
from .files import AnswerWriter, QuestionTable, output

QUESTION_BATCH = 1024  # questions through the VQA model at once: memory stays flat however many share an image
Answer = tuple[str, float]
Row = tuple[int, Answer | None, str | None]  # (row index, top answer, None) or (row index, None, the reason)


class _InOrder:
    """Rows finished in any order, given out in row order, each as soon as it and the rows before it are done."""

    def __init__(self) -> None:
        self.done: dict[int, tuple[Answer | None, str | None]] = {}  # finished rows not yet given out
        self.given = 0  # rows given out so far

    def ready(self) -> Iterator[Row]:
        while self.given in self.done:
            yield self.given, *self.done.pop(self.given)
            self.given += 1


def _answer_image(
    model: VQAPredictor,
    image,
    rows: Sequence[tuple[str, str]],
    indices: list[int],
    choices: Sequence[str] | None,
    order: _InOrder,
) -> Iterator[Row]:
    """Answer the rows ``indices``, which share ``image``: multiple choice where the row offers choices."""
    answerable, offered = [], {}
    for i in indices:
        try:
            model.question_ids(rows[i][1])
            if choices and choices[i].strip():
                offered[i] = parse_choices(choices[i])
            else:
                answerable.append(i)
        except ValueError as e:
            order.done[i] = (None, str(e))
    features = model.preprocess([image]) if answerable or offered else None
    for chunk in batched(list(offered), QUESTION_BATCH):
        try:
            best = model.choose(features, [rows[i][1] for i in chunk], [offered[i] for i in chunk])
            order.done.update((i, (b[0], None)) for i, b in zip(chunk, best))
        except ValueError as e:  # no caption weights to score the choices with
            order.done.update((i, (None, str(e))) for i in chunk)
    for chunk in batched(answerable, QUESTION_BATCH):
        answers = model.answer(features.expand(len(chunk), *features.shape[1:]), [rows[i][1] for i in chunk], 1)
        order.done.update((i, (a[0], None)) for i, a in zip(chunk, answers))
        yield from order.ready()


def answer_rows(
    model: VQAPredictor,
    rows: Sequence[tuple[str, str]],
    folder: Path,
    progress: bool = True,
    choices: Sequence[str] | None = None,
) -> Iterator[Row]:
    """(row index, top answer, None) for each (image_id, question) row whose image (``folder/<image_id>.*``) and
    question can be read, and (row index, None, the one-line reason) for each other row, in row order, each as
    soon as it and the rows before it are done. Each image is read and encoded once for all its questions, which
    go through the model :data:`QUESTION_BATCH` at a time, so memory stays flat however many questions an image
    has; images are taken in the order of their first row, so a CSV whose rows are grouped by image streams out
    as it goes. ``choices`` holds each row's choices string (see :func:`captioner.choices.parse_choices`; blank:
    none); a row with choices is answered by the best of them."""
    files = images_by_stem(folder)
    by_image: dict[str, list[int]] = defaultdict(list)
    for i, (image_id, _) in enumerate(rows):
        by_image[image_id.strip()].append(i)
    order = _InOrder()
    known = [image_id for image_id in by_image if image_id in files]
    for image_id in by_image.keys() - set(known):
        order.done.update((i, (None, f"no image named {image_id!r} in {folder}")) for i in by_image[image_id])
    yield from order.ready()
    for good, images, bad in image_batches(
        known, 1, model.image_size, lambda image_id: files[image_id], progress, desc="answering"
    ):
        for image_id, reason in bad:
            order.done.update((i, (None, reason)) for i in by_image[image_id])
        for image_id, image in zip(good, images):
            yield from _answer_image(model, image, rows, by_image[image_id], choices, order)
        yield from order.ready()


def ask_batch(args: argparse.Namespace, model: VQAPredictor, table: QuestionTable) -> int:
    """Every row of the --batch CSV ``table``, written back with its answer as soon as it is answered."""
    if not Path(args.images).is_dir():
        return fail(f"{args.images}: not a folder")
    try:
        images_by_stem(args.images)  # two images of one name (1.jpg, 1.png) are refused before any is answered
    except ValueError as e:
        return fail(str(e))
    failed = 0
    with output(args.output) as out:
        writer = AnswerWriter(out, table.columns)
        choices = table.choices()
        for i, answer, error in answer_rows(model, table.questions(), Path(args.images), choices=choices):
            if error:
                failed += 1
                print(f"captioner: row {i + 1}: {error}", file=sys.stderr)
            else:
                warn_unknown(model, table.field(i, "question"), f"row {i + 1}: ")
            offered = choices and choices[i].strip()  # sure is blank for a multiple-choice row (see ask.py)
            writer.write(table.rows[i], answer, model.sure(answer[1], answer[0]) if answer and not offered else None)
    if failed:
        print(f"captioner: {failed} of {len(table.rows)} question(s) could not be answered", file=sys.stderr)
    return 1 if failed else 0
