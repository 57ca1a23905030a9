"""Every file the command line reads or writes: output files (written whole or not at all), the four
caption formats, the ``ask --batch`` CSV, and the files of ``captioner eval`` (results and references in,
scores out). The commands in :mod:`captioner.cli` only choose among these."""

from __future__ import annotations

import codecs
import csv
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence, TextIO

from ..confidence import marked
from ..data.captions import image_caption, json_records, read_coco_captions, read_flickr8k_tokens, read_split_list
from ..images import image_id_from_filename
from ..io import atomic_path, one_line, parse_json, read_csv_rows, read_text
from ..metrics.captions import CaptionScores

OUTPUT_FORMATS = ("text", "jsonl", "csv", "coco")
PREDICTION_COLUMNS = ("predicted_answer", "probability", "sure")  # what `ask --batch` adds to each row
CHOICES_COLUMN = "choices"  # an optional `ask --batch` column: the row's candidates (see captioner.choices)


# ---------------------------------------------------------------- output files


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links, or ``./`` and ``../``)."""
    try:
        return a.resolve() == b.resolve() or a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | None, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse an output path that is a folder or one of the command's ``inputs`` (it would be replaced by what is
    written), create the folders it names, and try writing there, all before any work is done; ValueError (one
    line) when any of that fails."""
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{path}: is a folder; give a file name to write to")
    same = next((str(i) for i in inputs if _same_file(target, Path(i))), None)
    if same is not None:
        raise ValueError(
            f"{path}: is an input of this command ({same}); writing there would replace it, so give another file name"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{path}: cannot create the folder {target.parent}: a file is in the way") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot create the folder {target.parent} ({e.strerror})") from None
    try:  # the results are written there only at the end: find out now whether they can be
        tempfile.TemporaryFile(dir=target.parent).close()
    except OSError as e:
        raise ValueError(f"{path}: cannot write in {target.parent} ({e.strerror})") from None


def _keep_bytes_escape_the_rest(error: UnicodeError) -> tuple[bytes, int]:
    """A codec error handler for what the command writes: a byte of a file name that is not UTF-8 (which Python
    holds as a lone surrogate, PEP 383) is written as that byte, so the name is written as it is on disk; any
    other character the stream's encoding lacks (a strict ASCII locale) as a backslash escape, ``\\xe9``."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return b"".join(
        bytes([ord(c) - 0xDC00]) if 0xDC80 <= ord(c) <= 0xDCFF else c.encode("ascii", "backslashreplace")
        for c in error.object[error.start : error.end]
    ), error.end


ENCODING_ERRORS = "captioner.write"  # the name of the handler above, for ``open(..., errors=...)``
codecs.register_error(ENCODING_ERRORS, _keep_bytes_escape_the_rest)

_CONTROL = {**{c: f"\\x{c:02x}" for c in (*range(32), 127)}, 9: "\\t", 10: "\\n", 13: "\\r"}


def one_field(text: str) -> str:
    """``text`` with its control characters written as ``\\t``, ``\\n``, ``\\r`` or ``\\xNN``: a file name or
    question in text output, where a TAB or newline would split its record."""
    return text.translate(_CONTROL)


@contextmanager
def output(path: str | None) -> Iterator[TextIO]:
    """stdout, or the file ``path`` (UTF-8) written whole or not at all (``checkpoint.atomic_path``): an interrupted
    or failed command leaves what was there before. Either way a file name that is not UTF-8 is written as its
    bytes, and on stdout what its encoding lacks is escaped (:data:`ENCODING_ERRORS`), never an error."""
    if not path:
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors=ENCODING_ERRORS)
        yield sys.stdout
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8", errors=ENCODING_ERRORS) as out:
        yield out


# ---------------------------------------------------------------- captions


class CaptionWriter:
    """Captions in one of :data:`OUTPUT_FORMATS`: ``text`` (``file<TAB>caption``; with ``n_best`` > 1, a header
    line, then ``file<TAB>rank<TAB>score<TAB>log_prob<TAB>caption`` per caption), ``jsonl`` and ``csv`` (a record
    per image, or per caption), and ``coco`` (a results JSON list, written by :meth:`close`). ``score`` is what beam
    search ranked by (the log-prob divided by length ** length_penalty); ``sampled`` captions are in the order
    they were drawn, so the text header says ``sample`` instead of ``rank``. In text output, control characters
    of a file name are escaped (:func:`one_field`), so that each record is one line; in every format a name that is
    not UTF-8 is written as its bytes, as it is on disk (JSON's ``\\u`` escapes would change it). A caption below the
    weights' calibrated threshold ends in "(not sure)"; jsonl and csv give its ``confidence`` and ``sure`` (true,
    false, or null/blank for weights without a threshold: :mod:`captioner.confidence`); jsonl also its ``warning``,
    why it is not sure whatever its confidence (an image too wide or too tall), or null."""

    def __init__(self, out: TextIO, fmt: str = "text", n_best: int = 1, sampled: bool = False):
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {fmt!r}")
        self.out, self.fmt, self.n_best, self.coco = out, fmt, n_best, []
        self.csv = csv.writer(out) if fmt == "csv" else None
        if self.csv:
            self.csv.writerow(["file", "image_id", "rank", "caption", "log_prob", "score", "confidence", "sure"])
        elif fmt == "text" and n_best > 1:
            out.write(f"file\t{'sample' if sampled else 'rank'}\tscore\tlog_prob\tcaption\n")

    def write(self, path: Path, nbest: Sequence) -> None:
        """The captions of one image file, best first (:class:`captioner.pipeline.Caption`)."""
        image_id = image_id_from_filename(path)
        if self.fmt == "coco":
            self.coco.append({"image_id": image_id, "caption": nbest[0].text})
        elif self.fmt == "jsonl":
            best = nbest[0]
            self.out.write(
                json.dumps(
                    {
                        "file": str(path),
                        "image_id": image_id,
                        "caption": best.text,
                        "log_prob": round(best.log_prob, 4),
                        "confidence": round(best.confidence, 4),
                        "sure": best.sure,
                        "warning": best.warning,
                        "n_best": [
                            {
                                "caption": c.text,
                                "log_prob": round(c.log_prob, 4),
                                "score": round(c.score, 4),
                                "confidence": round(c.confidence, 4),
                                "sure": c.sure,
                            }
                            for c in nbest
                        ],
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
        elif self.csv:
            for rank, c in enumerate(nbest, 1):
                self.csv.writerow(
                    [
                        str(path),
                        image_id,
                        rank,
                        c.text,
                        f"{c.log_prob:.4f}",
                        f"{c.score:.4f}",
                        f"{c.confidence:.4f}",
                        sure_field(c.sure),
                    ]
                )
        elif self.n_best == 1:
            self.out.write(f"{one_field(str(path))}\t{marked(nbest[0].text, nbest[0].sure)}\n")
        else:
            for rank, c in enumerate(nbest, 1):
                self.out.write(
                    f"{one_field(str(path))}\t{rank}\t{c.score:.3f}\t{c.log_prob:.3f}\t{marked(c.text, c.sure)}\n"
                )

    def close(self) -> None:
        if self.fmt == "coco":
            json.dump(self.coco, self.out, indent=1, ensure_ascii=False)
            self.out.write("\n")


# ---------------------------------------------------------------- ask --batch


@dataclass
class QuestionTable:
    """An ``ask --batch`` CSV as read (:func:`captioner.io.read_csv_rows`, which refuses a ragged row): its header
    and each data row's fields, in the header's order."""

    path: str
    columns: list[str]
    rows: list[list[str]]

    def field(self, row: int, column: str) -> str:
        """The field of data row ``row`` (0-based) in ``column``."""
        return self.rows[row][self.columns.index(column)]

    def questions(self) -> list[tuple[str, str]]:
        """(image_id, question) of every row."""
        return [(self.field(i, "image_id"), self.field(i, "question")) for i in range(len(self.rows))]

    def choices(self) -> list[str] | None:
        """Every row's :data:`CHOICES_COLUMN` field (blank: none), or None when the table has no such column."""
        if CHOICES_COLUMN not in self.columns:
            return None
        return [self.field(i, CHOICES_COLUMN) for i in range(len(self.rows))]


def read_question_rows(path: str | Path) -> QuestionTable:
    """The ``ask --batch`` CSV ``path``; ValueError (one line) when it cannot be used: not UTF-8 CSV, a ragged row,
    no image_id or question column, a column named twice (which one would be read?), or a column where the
    predictions go."""
    columns, rows = read_csv_rows(path, ("image_id", "question"))
    taken = [c for c in PREDICTION_COLUMNS if c in columns]
    if taken:
        raise ValueError(
            f"{path}: already has column(s) {', '.join(taken)}, where the predictions would go; rename or remove them"
        )
    return QuestionTable(str(path), columns, [list(fields.values()) for _, fields in rows])


def sure_field(sure: bool | None) -> str:
    """``sure`` in a CSV field: true, false, or blank when the weights record no threshold."""
    return "" if sure is None else str(sure).lower()


class AnswerWriter:
    """The rows of a :class:`QuestionTable` as they were read, each with the :data:`PREDICTION_COLUMNS` after the
    header's columns (blank for an unanswered row), written one at a time as they are answered."""

    def __init__(self, out: TextIO, columns: Sequence[str]):
        self.csv = csv.writer(out)
        self.csv.writerow([*columns, *PREDICTION_COLUMNS])

    def write(self, fields: Sequence[str], answer: tuple[str, float] | None, sure: bool | None = None) -> None:
        predicted = [answer[0], f"{answer[1]:.4f}", sure_field(sure)] if answer else ["", "", ""]
        self.csv.writerow([*fields, *predicted])


# ---------------------------------------------------------------- eval


def read_results(path: str | Path) -> dict:
    """``{image_id: caption}`` from a COCO results JSON list or JSON lines; a one-line ValueError naming the file
    and the record when the file is not one, when an image is repeated, or when an id is not a number or string
    or a caption not a string (``null`` would otherwise be scored as the word "None")."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a results file")
    text = read_text(path)
    try:
        records = parse_json(text)
    except json.JSONDecodeError:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(parse_json(line))
                except ValueError as e:
                    raise ValueError(f"{path}: neither a JSON list nor JSON lines (line {n}: {one_line(e)})") from None
    except ValueError as e:  # nested too deeply
        raise ValueError(f"{path}: {one_line(e)}") from None
    results: dict = {}
    for i, r in enumerate(json_records(path, records), 1):
        where = f"{path}: record {i}"
        image_id, caption = image_caption(r, where)
        if image_id in results:
            raise ValueError(f"{where}: image {image_id!r} has more than one caption; keep one per image")
        results[image_id] = caption
    return results


def read_references(
    coco_annotations: str | Path | None = None,
    flickr8k_tokens: str | Path | None = None,
    split_list: str | Path | None = None,
) -> dict:
    """``{image_id: [captions]}`` from a COCO captions JSON, or Flickr8k tokens (limited to ``split_list``); a
    one-line ValueError naming the file when it is not one."""
    if coco_annotations:
        return {item.image_id: item.captions for item in read_coco_captions(coco_annotations) if item.captions}
    if not flickr8k_tokens:
        raise ValueError("no references given")
    refs = read_flickr8k_tokens(flickr8k_tokens)
    if split_list:
        refs = {n: refs[n] for n in read_split_list(split_list) if n in refs}
    return refs


def write_per_image_csv(path: str | Path, scores: CaptionScores, results: Mapping) -> None:
    """Per-image scores. BLEU and METEOR columns are named ``sentence_*``: their mean is not the corpus score
    (corpus BLEU pools n-gram counts over all images); ``image_*`` columns do average to the corpus score.
    The file is written whole or not at all (:func:`checkpoint.atomic_path`)."""
    names = {m: f"sentence_{m}" if m.startswith(("Bleu", "METEOR")) else f"image_{m}" for m in scores.per_image}
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "caption", *names.values()])
        for row, image_id in enumerate(scores.image_ids):
            writer.writerow([image_id, results[image_id], *(f"{scores.per_image[m][row]:.6f}" for m in names)])


def write_scores_json(
    path: str | Path, scores: CaptionScores, reference_captions: int, metrics: Sequence[str] | None, **evaluated
) -> None:
    """Corpus scores, with what was evaluated: counts, tokenizer, metrics, and ``evaluated`` (the results and
    references files, the split, the checkpoint and its decoding settings)."""
    from dataclasses import asdict

    from ..metrics.captions import METRICS

    decoding = evaluated.pop("decoding", None)
    record = dict(scores.corpus)
    record["evaluated"] = {
        "images": len(scores.image_ids),
        "reference_captions": reference_captions,
        "tokenizer": {
            "java": "pycocoevalcap PTBTokenizer (Stanford CoreNLP 3.4.1)",
            "python": "captioner PTB tokenizer (same tokens as pycocoevalcap's)",
        }[scores.tokenizer],
        "metrics": [m for m in METRICS if m in (metrics or METRICS)],
        "skipped": scores.skipped,
        **evaluated,
        "decoding": asdict(decoding) if decoding else None,
    }
    with output(path) as out:
        out.write(json.dumps(record, indent=1) + "\n")
