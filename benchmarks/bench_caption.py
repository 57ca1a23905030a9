"""Caption quality per dataset, throughput and memory of the shipped weights, and the example photos.

    python benchmarks/bench_caption.py [--data flickr8k:../shared/data/flickr8k --data coco:../shared/data/coco]
                                       [--weights NAME|DIR] [--precision P] [--runtime R] [--check]

Runs `captioner caption` (the weights' default decoding) end to end on the dev images of every dataset at once
(Flickr8k's 1,000 and COCO's 300), as a user would, then scores each dataset's captions with the coco-caption
metrics. Prints images/s, peak memory, and each dataset's BLEU-4 and CIDEr against its target. Then
captions the six photos in examples/ (never trained or tuned on) and counts those whose caption
names the main object.

With --check, exits 1 unless the scores match the dev scores of the weights entry (to 0.002):
``captioner.pretrained``, where the weights' decoding defaults also live. The benchmark only reads them.
The entry's scores are float32 figures, so --check captions at ``--precision fp32`` unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from captioner.data.datasets import DatasetSpec, load_caption_dataset
from captioner.metrics.captions import corpus_scores
from captioner.options import RUNTIMES
from captioner.precision import PRECISIONS
from captioner.pretrained import resolve_weights
from captioner.runtime import resolve_runtime
from captioner.train.loop import dataset_names

TARGETS = {"flickr8k": {"Bleu_4": 0.20, "CIDEr": 0.47}, "coco": {"Bleu_4": 0.20, "CIDEr": 0.60}}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MAIN_OBJECT = {
    "laptop.jpg": r"laptop|computer",
    "pizza.jpg": r"pizza",
    "stop-sign.jpg": r"stop sign",
    "tennis.jpg": r"tennis",
    "skateboarder.jpg": r"skateboard",
    "cat-mirror.jpg": r"\bcats?\b",
}


def caption_files(
    paths: list[Path], weights: str | None, decoding: dict, precision: str, runtime: str = "auto"
) -> tuple[dict[str, str], float, float]:
    """``captioner caption`` over ``paths`` in a subprocess: {path: caption}, seconds, and its peak RSS in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "captions.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "captioner.cli",
            "caption",
            *map(str, paths),
            "--format",
            "jsonl",
            "--output",
            str(out),
            "--precision",
            precision,
            "--runtime",
            runtime,
            *(["--weights", weights] if weights else []),
        ]
        for key, value in decoding.items():
            cmd += ["--" + key.replace("_", "-"), str(value)]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        captions = {r["file"]: r["caption"] for r in map(json.loads, out.read_text().splitlines())}
    return captions, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        action="append",
        metavar="NAME:ROOT",
        help="a caption dataset; repeat for several (default: Flickr8k and COCO in ../shared/data)",
    )
    parser.add_argument("--weights", help="weights entry name or folder (default: the default entry)")
    parser.add_argument("--split", default="dev", help="split to score (default: dev)")
    parser.add_argument("--beam", type=int, help="beam size (default: the weights' own decoding setting)")
    parser.add_argument("--length-penalty", type=float, help="default: the weights' own decoding setting")
    parser.add_argument("--no-repeat-ngram", type=int, help="default: the weights' own decoding setting")
    parser.add_argument(
        "--precision", choices=PRECISIONS, help="inference precision (default: fp32 with --check, else auto)"
    )
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help="encoder runtime (default: auto)")
    parser.add_argument("--check", action="store_true", help="fail unless the weights entry's scores are reproduced")
    args = parser.parse_args()
    precision = args.precision or ("fp32" if args.check else "auto")

    specs = [
        DatasetSpec.parse(d) for d in args.data or ["flickr8k:../shared/data/flickr8k", "coco:../shared/data/coco"]
    ]
    parts = {name: load_caption_dataset(s.name, s.root, args.split) for name, s in zip(dataset_names(specs), specs)}
    decoding = {
        k: v
        for k, v in [
            ("beam", args.beam),
            ("length_penalty", args.length_penalty),
            ("no_repeat_ngram", args.no_repeat_ngram),
        ]
        if v is not None
    }
    paths = [it.path for items in parts.values() for it in items]
    captions, seconds, peak_mb = caption_files(paths, args.weights, decoding, precision, args.runtime)
    print(
        f"images: {len(captions)}  decoding: {decoding or 'the weights defaults'}  runtime: "
        f"{resolve_runtime(args.runtime, precision)[0]}"
    )
    print(f"end-to-end: {seconds:.1f} s, {len(captions) / seconds:.1f} images/s (model loading included)")
    print(f"peak memory (RSS): {peak_mb:.0f} MB")
    scores = {}
    for name, items in parts.items():
        results = {it.image_id: captions[str(it.path)] for it in items}
        scores[f"{name} {args.split}"] = corpus_scores(results, {it.image_id: it.captions for it in items})
        figures = "  ".join(f"{k} {v:.4f}" for k, v in scores[f"{name} {args.split}"].items())
        print(f"{name} {args.split} ({len(items)} images): {figures}")
        for key, target in TARGETS.get(name, {}).items():
            value = scores[f"{name} {args.split}"][key]
            print(f"  target {key} >= {target}: {'met' if value >= target else 'NOT met'} ({value:.4f})")

    examples = sorted(EXAMPLES.glob("*.jpg"))
    named = 0
    for path, caption in caption_files(examples, args.weights, decoding, precision, args.runtime)[0].items():
        hit = bool(re.search(MAIN_OBJECT.get(Path(path).name, r"$^"), caption))
        named += hit
        print(f"  {'ok ' if hit else 'MISS'} {Path(path).name}: {caption}")
    print(f"example photos whose caption names the main object: {named} of {len(examples)} (target >= 5)")

    if not args.check:
        return 0
    entry = resolve_weights(args.weights, "caption")[1]
    if entry is None or decoding:
        print("FAIL: --check needs a weights entry and its own decoding (no --beam, --length-penalty, ...)")
        return 1
    recorded, ok = entry.scores, True
    for part in [p for p in scores if p not in recorded]:
        print(f"note: {entry.name} records no scores on {part}")
    for part, figures in ((p, f) for p, f in scores.items() if p in recorded):
        for key in ("Bleu_4", "CIDEr"):
            if abs(figures[key] - recorded[part][key]) > 2e-3:  # a caption or two may flip across CPUs
                print(f"FAIL: {part} {key} {figures[key]:.4f} differs from the recorded {recorded[part][key]:.4f}")
                ok = False
    print("reproduction check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
