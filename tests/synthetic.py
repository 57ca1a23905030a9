"""Small generated datasets in the official on-disk formats, so tests never need ../shared."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 20)}
SHAPES = ("circle", "square")


def draw(color: str, shape: str, size: int = 96) -> Image.Image:
    img = Image.new("RGB", (size, size), (245, 245, 245))
    d = ImageDraw.Draw(img)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLORS[color])
    return img


def shape_items():
    """(file name, color, shape, caption) for every color and shape."""
    return [
        (f"{1000 + i}_{color}{shape}.jpg", color, shape, f"a {color} {shape} on a white background")
        for i, (color, shape) in enumerate((c, s) for c in COLORS for s in SHAPES)
    ]


def make_flickr8k(root: Path, captions_per_image: int = 2) -> Path:
    """A Flickr8k-layout folder whose train and dev splits both hold all 8 shape images."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines, names = [], []
    for name, color, shape, caption in shape_items():
        draw(color, shape).save(root / "images" / name)
        names.append(name)
        lines += [f"{name}#{k}\t{caption.capitalize()} ." for k in range(captions_per_image)]
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for split in ("train", "dev"):
        (root / f"Flickr_8k.{split}Images.txt").write_text("\n".join(names) + "\n")
    return root


def make_coco(root: Path) -> tuple[Path, Path]:
    """A COCO captions annotation file and image folder for the shape images."""
    images_dir = root / "train2017"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, (_, color, shape, caption) in enumerate(shape_items()):
        image_id = 100 + i
        name = f"{image_id:012d}.jpg"
        draw(color, shape).save(images_dir / name)
        images.append({"id": image_id, "file_name": name, "width": 96, "height": 96, "license": 4})
        anns.append({"id": 1000 + i, "image_id": image_id, "caption": caption})
    ann_file = root / "annotations" / "captions_train2017.json"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": anns}))
    return ann_file, images_dir


def make_karpathy(root: Path) -> Path:
    """A Karpathy-split dataset_coco.json (train/restval/val/test) over generated images."""
    (root / "val2014").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (_, color, shape, caption) in enumerate(shape_items()):
        cocoid = 500 + i
        name = f"COCO_val2014_{cocoid:012d}.jpg"
        draw(color, shape).save(root / "val2014" / name)
        split = ["train", "restval", "val", "test"][i % 4]
        entries.append(
            {
                "filepath": "val2014",
                "filename": name,
                "imgid": i,
                "split": split,
                "cocoid": cocoid,
                "sentids": [i],
                "sentences": [{"raw": caption, "tokens": caption.split(), "imgid": i, "sentid": i}],
            }
        )
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return path


def make_coco_folder(root: Path) -> Path:
    """The layout of a COCO subset folder: ``{train,dev}/<12-digit id>.jpg``, captions in
    ``annotations/captions_<split>.json`` and questions in ``qa_<split>.jsonl``. Both splits hold all
    8 shape images; each has a colour question with ten human answers and a shape question with one."""
    for split in ("train", "dev"):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, anns, questions = [], [], []
        for i, (_, color, shape, _caption) in enumerate(shape_items()):
            image_id = 16500 + i
            draw(color, shape).save(root / split / f"{image_id:012d}.jpg")
            images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 96, "height": 96})
            anns.append({"id": 1000 + i, "image_id": image_id, "caption": f"There is a {shape} that is {color}."})
            questions += [
                {
                    "image_id": image_id,
                    "question": "What color is it?",
                    "source": "vqa_v2",
                    "answers": [color] * 8 + ["dark " + color, "i don't know"],
                },
                {"image_id": image_id, "question": "What shape is it?", "answers": [shape], "source": "cocoqa"},
            ]
        ann_file = root / "annotations" / f"captions_{split}.json"
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        ann_file.write_text(json.dumps({"images": images, "annotations": anns}))
        (root / f"qa_{split}.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    return root


def png_claiming_size(path: Path, width: int, height: int) -> None:
    """A valid PNG header that announces a huge image (decoding it would need gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    )


def tiny_decoder(
    vocab_size: int = 12, cell: str = "lstm", image_input: str = "every_step", seed: int = 0, attention: bool = False
):
    """A small caption decoder with seeded random weights (feature_dim 16), for model and decoding tests."""
    import torch

    from captioner.decoder import CaptionDecoder, DecoderConfig

    torch.manual_seed(seed)
    return CaptionDecoder(
        DecoderConfig(vocab_size, 16, 8, 16, 8, cell=cell, image_input=image_input, dropout=0, attention=attention)
    )
