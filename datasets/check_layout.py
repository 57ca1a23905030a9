"""Check that a caption dataset is laid out as captioner expects; exit 1 when it is not.

python datasets/check_layout.py flickr8k /data/flickr8k [--split train]
python datasets/check_layout.py coco /data/coco --split train2017 [--annotations FILE]
python datasets/check_layout.py karpathy /data/coco --annotations dataset_coco.json [--split test]
"""

from __future__ import annotations

import argparse
import sys

from captioner.data.datasets import load_caption_dataset


def check(name: str, root: str, split: str, annotations: str | None) -> list[str]:
    """Problems found (empty when the layout is usable)."""
    try:
        items = load_caption_dataset(name, root, split, annotations)
    except (FileNotFoundError, ValueError, KeyError) as e:
        return [f"cannot read {name} at {root}: {e}"]
    problems = []
    missing = [it.path for it in items if not it.path.exists()]
    uncaptioned = [it.path for it in items if not it.captions]
    if not items:
        problems.append("no images listed")
    if missing:
        problems.append(f"{len(missing)} image file(s) missing, e.g. {missing[0]}")
    if uncaptioned:
        problems.append(f"{len(uncaptioned)} image(s) without captions, e.g. {uncaptioned[0]}")
    captions = sum(len(it.captions) for it in items)
    print(f"{name} {split}: {len(items)} images, {captions} captions, {len(missing)} missing files")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=["flickr8k", "coco", "karpathy"])
    parser.add_argument("root")
    parser.add_argument("--split", default=None, help="default: train (flickr8k, karpathy), train2017 (coco)")
    parser.add_argument("--annotations")
    args = parser.parse_args()
    split = args.split or ("train2017" if args.data == "coco" else "train")
    problems = check(args.data, args.root, split, args.annotations)
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
