"""Every file the command line reads or writes: output files (written whole or not at all), the four
caption formats, the ``ask --batch`` CSV, and the files of ``captioner eval`` (results and references in,
scores out). The commands in :mod:`captioner.cli` only choose among these."""
from __future__ import annotations

import csv
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence, TextIO

from .caption_metrics import CaptionScores
from .checkpoint import atomic_path, one_line
from .data import load_coco, read_flickr8k_tokens, read_split_list
from .images import image_id_from_filename

CAPTION_FORMATS = ("text", "jsonl", "csv", "coco")
PREDICTION_COLUMNS = ("predicted_answer", "probability")  # what `ask --batch` adds to each row


# ---------------------------------------------------------------- output files


def check_output(path: str | None) -> None:
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


@contextmanager
def output(path: str | None) -> Iterator[TextIO]:
    """stdout, or the file ``path`` written whole or not at all (``checkpoint.atomic_path``): an interrupted or
    failed command leaves what was there before."""
    if not path:
        yield sys.stdout
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        yield out


# ---------------------------------------------------------------- captions


class CaptionWriter:
    """Captions in one of :data:`CAPTION_FORMATS`: ``text`` (``file<TAB>caption``, or with several captions
    ``file<TAB>rank<TAB>log_prob<TAB>caption``), ``jsonl`` and ``csv`` (a record per image, or per caption), and
    ``coco`` (a results JSON list, written by :meth:`close`)."""

    def __init__(self, out: TextIO, fmt: str = "text"):
        if fmt not in CAPTION_FORMATS:
            raise ValueError(f"format must be one of {', '.join(CAPTION_FORMATS)}, not {fmt!r}")
        self.out, self.fmt, self.coco = out, fmt, []
        self.csv = csv.writer(out) if fmt == "csv" else None
        if self.csv:
            self.csv.writerow(["file", "image_id", "rank", "caption", "log_prob"])

    def write(self, path: Path, nbest: Sequence) -> None:
        """The captions of one image file, best first (:class:`captioner.pipeline.Caption`)."""
        image_id = image_id_from_filename(path)
        if self.fmt == "coco":
            self.coco.append({"image_id": image_id, "caption": nbest[0].text})
        elif self.fmt == "jsonl":
            self.out.write(json.dumps({"file": str(path), "image_id": image_id, "caption": nbest[0].text,
                                       "log_prob": round(nbest[0].log_prob, 4),
                                       "n_best": [{"caption": c.text, "log_prob": round(c.log_prob, 4)}
                                                  for c in nbest]}) + "\n")
        elif self.csv:
            for rank, c in enumerate(nbest, 1):
                self.csv.writerow([str(path), image_id, rank, c.text, f"{c.log_prob:.4f}"])
        elif len(nbest) == 1:
            self.out.write(f"{path}\t{nbest[0].text}\n")
        else:
            for rank, c in enumerate(nbest, 1):
                self.out.write(f"{path}\t{rank}\t{c.log_prob:.3f}\t{c.text}\n")

    def close(self) -> None:
        if self.fmt == "coco":
            json.dump(self.coco, self.out, indent=1)
            self.out.write("\n")


# ---------------------------------------------------------------- ask --batch


def read_question_rows(path: str | Path) -> tuple[list[dict], list[str]]:
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


def write_answer_rows(out: TextIO, columns: Sequence[str], rows: Sequence[dict],
                      answers: Mapping[int, tuple[str, float]]) -> None:
    """The rows as they were read, with the :data:`PREDICTION_COLUMNS` added (blank for unanswered rows)."""
    writer = csv.writer(out)
    writer.writerow([*columns, *PREDICTION_COLUMNS])
    for i, row in enumerate(rows):
        answer, p = answers.get(i, ("", None))
        writer.writerow([*(row.get(c, "") for c in columns), answer, "" if p is None else f"{p:.4f}"])


# ---------------------------------------------------------------- eval

def read_results(path: str | Path) -> dict:
    """``{image_id: caption}`` from a COCO results JSON list or JSON lines; a one-line ValueError when the file
    is not one, when an image is repeated, or when an id is not a number or string or a caption not a string
    (``null`` would otherwise be scored as the word "None")."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a results file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (not UTF-8)") from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: neither a JSON list nor JSON lines ({e})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and {"image_id", "caption"} <= r.keys()
                                                for r in records):
        raise ValueError(f"{path}: expected records with 'image_id' and 'caption'")
    results: dict = {}
    for r in records:
        image_id, caption = r["image_id"], r["caption"]
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise ValueError(f"{path}: image_id must be a number or a string, not {json.dumps(image_id)[:40]}")
        if not isinstance(caption, str):
            raise ValueError(f"{path}: the caption of image {image_id!r} must be a string, "
                             f"not {json.dumps(caption)[:40]}")
        if image_id in results:
            raise ValueError(f"{path}: image {image_id!r} has more than one caption; keep one per image")
        results[image_id] = caption
    return results


def read_references(coco_annotations: str | Path | None = None, flickr8k_tokens: str | Path | None = None,
                    split_list: str | Path | None = None) -> dict:
    """``{image_id: [captions]}`` from a COCO captions JSON, or Flickr8k tokens (limited to ``split_list``)."""
    if coco_annotations:
        try:
            return {it.image_id: it.captions for it in load_coco(coco_annotations, ".") if it.captions}
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{coco_annotations}: not a COCO captions file ({one_line(e)})") from None
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


def write_scores_json(path: str | Path, scores: CaptionScores, reference_captions: int,
                      metrics: Sequence[str] | None, **evaluated) -> None:
    """Corpus scores, with what was evaluated: counts, tokenizer, metrics, and ``evaluated`` (the results and
    references files, the split, the checkpoint and its decoding settings)."""
    from dataclasses import asdict

    from .caption_metrics import METRICS

    decoding = evaluated.pop("decoding", None)
    record = dict(scores.corpus)
    record["evaluated"] = {
        "images": len(scores.image_ids), "reference_captions": reference_captions,
        "tokenizer": {"java": "pycocoevalcap PTBTokenizer (Stanford CoreNLP 3.4.1)",
                      "python": "captioner PTB tokenizer (same tokens as pycocoevalcap's)"}[scores.tokenizer],
        "metrics": [m for m in METRICS if m in (metrics or METRICS)], "skipped": scores.skipped,
        **evaluated, "decoding": asdict(decoding) if decoding else None}
    with output(path) as out:
        out.write(json.dumps(record, indent=1) + "\n")
