"""The files of ``captioner eval``: results (COCO results JSON or JSON lines) and references in, per-image
scores out."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Mapping

from .caption_metrics import CaptionScores
from .checkpoint import atomic_path, one_line
from .data import load_coco, read_flickr8k_tokens, read_split_list

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
