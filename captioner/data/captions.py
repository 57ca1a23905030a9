"""Caption dataset formats: Flickr8k, COCO captions and Karpathy splits. Every loader returns the same thing, a
list of :class:`ImageCaptions`, so training, evaluation and the CLI never care which dataset they came from. A
malformed file is a one-line ValueError naming the file and the line (or item).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import read_json, read_text, required_path, shorten


@dataclass
class ImageCaptions:
    """One image and its reference captions (empty when captions are unknown)."""

    image_id: int | str
    path: Path
    captions: list[str] = field(default_factory=list)


def read_flickr8k_tokens(token_file: str | Path) -> dict[str, list[str]]:
    """Flickr8k ``IMAGE#N<TAB>caption`` lines as ``{image file name: [captions]}``; ValueError naming the file
    (and the line) when it is not UTF-8, a line lacks its TAB, or it holds no captions at all."""
    try:
        text = Path(token_file).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{token_file}: not UTF-8 text (expected IMAGE#N<TAB>caption lines)") from None
    refs: dict[str, list[str]] = defaultdict(list)
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise ValueError(f"{token_file}: line {n}: expected IMAGE#N<TAB>caption, not {shorten(line)!r}")
        key, caption = line.split("\t", 1)
        refs[key.split("#")[0]].append(caption.strip())
    if not refs:
        raise ValueError(f"{token_file}: no captions (expected IMAGE#N<TAB>caption lines)")
    return dict(refs)


def read_split_list(path: str | Path) -> list[str]:
    """The image names of a split list such as Flickr8k's ``Flickr_8k.devImages.txt``: one a line, blanks skipped."""
    return [n.strip() for n in read_text(path).splitlines() if n.strip()]


def load_flickr8k(root: str | Path, split: str = "train") -> list[ImageCaptions]:
    """Flickr8k in its official layout: ``images/``, ``Flickr8k.token.txt``, ``Flickr_8k.<split>Images.txt``."""
    root = Path(root)
    split_file = required_path(root / f"Flickr_8k.{split}Images.txt", " (splits: train, dev, test)")
    refs = read_flickr8k_tokens(root / "Flickr8k.token.txt")
    return [ImageCaptions(n, root / "images" / n, refs.get(n, [])) for n in read_split_list(split_file)]


def json_records(path: Path, data: Any, key: str | None = None) -> list[dict]:
    """``data`` (or its ``key``) if it is a list of JSON objects, else ValueError naming the file."""
    if key is not None:
        if not isinstance(data, dict):
            raise ValueError(
                f"{path}: expected a JSON object with 'images' and 'annotations' (COCO captions), "
                f"not a JSON {type(data).__name__}"
            )
        if key not in data:
            raise ValueError(f"{path}: missing {key!r} (COCO captions have 'images' and 'annotations')")
        data = data[key]
    where = f"{path}: {key}" if key else f"{path}"
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a list of records, not {quoted_json(data)}")
    bad = next((i for i, r in enumerate(data) if not isinstance(r, dict)), None)
    if bad is not None:
        raise ValueError(f"{where}: item {bad + 1} is not a JSON object but {quoted_json(data[bad])}")
    return data


def quoted_json(value: Any) -> str:
    """A JSON value as an error message quotes it: its start."""
    return shorten(json.dumps(value))


def json_id(value: Any, where: str, field: str = "image_id") -> int | str:
    """``value`` if it can be an id (a number or a string), else ValueError naming ``where`` and ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{where}: {field} must be a number or a string, not {quoted_json(value)}")
    return value


def image_caption(record: dict, where: str) -> tuple[int | str, str]:
    """A record's ``image_id`` and ``caption`` (a COCO annotation, or a result to score), or ValueError naming
    ``where`` when either is missing or ill-typed."""
    missing = [k for k in ("image_id", "caption") if k not in record]
    if missing:
        raise ValueError(f"{where}: expected records with 'image_id' and 'caption' (missing {missing[0]!r})")
    image_id, caption = json_id(record["image_id"], where), record["caption"]
    if not isinstance(caption, str):
        raise ValueError(f"{where}: the caption of image {image_id!r} must be a string, not {quoted_json(caption)}")
    return image_id, caption


def _coco_images(path: Path, data: Any, image_dir: Path | None) -> dict[int | str, ImageCaptions]:
    """The ``images`` of a COCO captions JSON by id, in file order, without their captions yet."""
    images: dict[int | str, ImageCaptions] = {}
    for i, image in enumerate(json_records(path, data, "images"), 1):
        where = f"{path}: images item {i}"
        if "id" not in image:
            raise ValueError(f"{where}: missing 'id'")
        image_id = json_id(image["id"], where, "id")
        if image_id in images:
            raise ValueError(f"{where}: image {image_id!r} is listed twice")
        if image_dir is not None and not isinstance(image.get("file_name"), str):
            raise ValueError(f"{where}: file_name must be a string, not {quoted_json(image.get('file_name'))}")
        images[image_id] = ImageCaptions(image_id, image_dir / image["file_name"] if image_dir else Path())
    return images


def read_coco_captions(path: str | Path, image_dir: str | Path | None = None) -> list[ImageCaptions]:
    """Every image of a COCO captions JSON (``{"images": [{"id", "file_name"}], "annotations": [{"image_id",
    "caption"}]}``), in file order, with its captions (stripped, in file order; none for an image without any),
    as pycocotools reads it: the one reader of that format, for training (:func:`load_coco`) and for scoring
    (``captioner eval``'s references). ``path`` of each image is ``image_dir / file_name``; without an
    ``image_dir`` file names are not needed, and it is empty. One-line ValueError naming the file and the item
    when it is not one or repeats an id."""
    path = Path(path)
    data = read_json(path)
    images = _coco_images(path, data, Path(image_dir) if image_dir is not None else None)
    seen_ids = set()
    for i, ann in enumerate(json_records(path, data, "annotations"), 1):
        where = f"{path}: annotations item {i}"
        image_id, caption = image_caption(ann, where)
        if "id" in ann:
            annotation_id = json_id(ann["id"], where, "id")
            if annotation_id in seen_ids:
                raise ValueError(f"{where}: annotation id {annotation_id!r} appears twice")
            seen_ids.add(annotation_id)
        if image_id in images:  # pycocotools, too, reads only the captions of listed images
            images[image_id].captions.append(caption.strip())
    return list(images.values())


def load_coco(annotations: str | Path, image_dir: str | Path) -> list[ImageCaptions]:
    """COCO captions (``captions_*.json``, :func:`read_coco_captions`), images in id order."""
    return sorted(
        read_coco_captions(annotations, image_dir), key=lambda item: (isinstance(item.image_id, str), item.image_id)
    )


def load_karpathy(dataset_json: str | Path, image_root: str | Path, split: str = "train") -> list[ImageCaptions]:
    """Karpathy-split ``dataset_{coco,flickr8k,flickr30k}.json``; ``train`` includes ``restval``."""
    data = read_json(dataset_json)
    wanted = {"train", "restval"} if split == "train" else {split}
    out = []
    for img in data["images"]:
        if img["split"] not in wanted:
            continue
        path = Path(image_root) / img.get("filepath", "") / img["filename"]
        image_id = int(img["cocoid"]) if "cocoid" in img else img["filename"]
        out.append(ImageCaptions(image_id, path, [s["raw"].strip() for s in img["sentences"]]))
    return out
