"""Caption quality, throughput and memory of the shipped weights on the Flickr8k dev split.

    python benchmarks/bench_caption.py [--root ../shared/data/flickr8k] [--weights weights] [--check]

Runs `captioner caption` (beam 3) end to end on the 1,000 dev JPEGs as a user would, then scores
the captions with the coco-caption metrics. Prints images/s, peak memory, BLEU-4 and CIDEr.
With --record, stores the scores in the weights' config.json, and with them the --length-penalty
and --no-repeat-ngram given, as the weights' default decoding; with --check, exits 1 unless the
scores match those recorded with the weights (to 0.002). Either way it says whether the quality
targets (BLEU-4 >= 0.21, CIDEr >= 0.55) are met.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from captioner.checkpoint import write_json
from captioner.data import load_flickr8k
from captioner.evaluation import corpus_scores

TARGETS = {"Bleu_4": 0.21, "CIDEr": 0.55}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data/flickr8k")
    parser.add_argument("--weights", default="weights")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("--length-penalty", type=float, help="default: the weights' own decoding setting")
    parser.add_argument("--no-repeat-ngram", type=int, help="default: the weights' own decoding setting")
    parser.add_argument("--check", action="store_true", help="fail unless the recorded scores are reproduced")
    parser.add_argument("--record", action="store_true", help="store the scores in the weights' config.json")
    args = parser.parse_args()

    items = load_flickr8k(args.root, args.split)
    with tempfile.TemporaryDirectory() as tmp:
        results_file = Path(tmp) / "results.json"
        cmd = [sys.executable, "-m", "captioner.cli", "caption", *[str(it.path) for it in items], "--weights",
               args.weights, "--beam", str(args.beam), "--format", "coco", "--output", str(results_file)]
        decoding = {k: v for k, v in [("length_penalty", args.length_penalty),
                                      ("no_repeat_ngram", args.no_repeat_ngram)] if v is not None}
        for key, value in decoding.items():
            cmd += ["--" + key.replace("_", "-"), str(value)]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        results = {r["image_id"]: r["caption"] for r in json.loads(results_file.read_text())}
    scores = corpus_scores(results, {it.image_id: it.captions for it in items})
    print(f"images: {len(results)}  beam: {args.beam}")
    print(f"end-to-end: {seconds:.1f} s, {len(results) / seconds:.1f} images/s (model loading included)")
    print(f"peak memory (RSS): {peak_mb:.0f} MB")
    for key, value in scores.items():
        print(f"{key:8s} {value:.4f}")
    config_file = Path(args.weights) / "caption" / "config.json"
    if args.record:
        config = json.loads(config_file.read_text())
        config["evaluation"] = {"data": f"flickr8k {args.split}", "beam_size": args.beam, **scores}
        config["decoding"] = {**config.get("decoding", {}), **decoding}
        write_json(config_file, config)
    for key, target in TARGETS.items():
        print(f"target {key} >= {target}: {'met' if scores[key] >= target else 'NOT met'}")
    if not args.check:
        return 0
    recorded = json.loads(config_file.read_text())["evaluation"]
    ok = True
    for key in TARGETS:
        if abs(scores[key] - recorded[key]) > 2e-3:  # a caption or two may flip across CPUs
            print(f"FAIL: {key} {scores[key]:.4f} differs from the recorded {recorded[key]:.4f}")
            ok = False
    print("reproduction check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
