"""Every encoder runtime and precision this CPU runs, side by side in one run: speed, memory, features, quality.

    python benchmarks/bench_runtime.py [--images DIR] [--n 1000] [--rounds 2] [--quality]

For each configuration (PyTorch fp32, the baseline; PyTorch bf16 where it is native; ONNX Runtime and OpenVINO
where installed; and what ``auto`` picks here) it prints:

- end to end: ``captioner caption`` on the first N JPEGs of DIR (default: 1,000 Flickr8k images), the weights'
  decoding (beam 3), in a fresh process each (model loading included; the encoder export made beforehand, as
  it is once per machine), its images/s and the ratio to PyTorch fp32 of the same round, and its peak RSS.
  Rounds alternate the configurations, so that a busy machine slows them alike; the median ratio is given.
- encoder alone: images/s in this process on 128 of the images, in chunks of 4 as the pipeline runs it, and the
  max |feature difference| from PyTorch fp32 on them (relative to the largest feature in brackets).
- with ``--quality``: Flickr8k dev and COCO dev CIDEr (and their difference from PyTorch fp32), the six
  ``examples/`` captions (how many are unchanged) and COCO dev VQA accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_precision import vqa_figures  # benchmarks/, beside this file

from captioner import Captioner
from captioner.data.datasets import load_caption_dataset
from captioner.encoder import build_encoder
from captioner.metrics.captions import corpus_scores
from captioner.options import CPU_RUNTIMES
from captioner.precision import native_precisions
from captioner.runtime import installed, load_runtime, resolve_runtime

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data"
EXAMPLES = sorted((ROOT / "examples").glob("*.jpg"))


def configurations() -> list[tuple[str, str]]:
    """(runtime, precision) pairs this CPU runs: PyTorch fp32 first (the baseline), then the others, then auto."""
    found = [("torch", "fp32")]
    found += [("torch", p) for p in native_precisions() if p != "fp32"]
    found += [(name, "fp32") for name in CPU_RUNTIMES if installed(name)]
    return found + [("auto", "auto")]


def caption(paths: list[Path], runtime: str, precision: str) -> tuple[dict[str, str], float, float, float]:
    """``captioner caption`` over ``paths`` in a fresh process: {path: caption}, seconds, CPU seconds (user and
    system, all threads: a figure that a busy machine inflates less than the wall time) and peak RSS in MB."""
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
            "--runtime",
            runtime,
            "--precision",
            precision,
            "-q",
        ]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise RuntimeError(f"captioner caption --runtime {runtime} --precision {precision} failed")
        captions = {r["file"]: r["caption"] for r in map(json.loads, out.read_text().splitlines())}
    return captions, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def encoder_figures(paths: list[Path]) -> dict[tuple[str, str], tuple[float, float, float, float]]:
    """(images/s alone, images per CPU second, max |difference| from PyTorch fp32, the same relative to the largest
    feature) per config, rounds alternating."""
    base = build_encoder("efficientnet-lite0")
    pixels = torch.stack([base.preprocess(p) for p in paths[:128]])
    encoders = {}
    for runtime, precision in configurations():
        encoder, chosen = load_runtime(build_encoder("efficientnet-lite0"), resolve_runtime(runtime, precision))
        encoders[(runtime, precision)] = (encoder, chosen)
    rates: dict = {key: [] for key in encoders}
    cpu_rates: dict = {key: [] for key in encoders}
    outputs = {}
    with torch.inference_mode():
        for _ in range(3):
            for key, (encoder, chosen) in encoders.items():
                with chosen.autocast():
                    encoder(pixels[:4])
                    start, cpu = time.perf_counter(), time.process_time()
                    outputs[key] = torch.cat([encoder(chunk).float() for chunk in pixels.split(4)])
                    rates[key].append(len(pixels) / (time.perf_counter() - start))
                    cpu_rates[key].append(len(pixels) / (time.process_time() - cpu))
    reference = outputs[("torch", "fp32")]
    return {
        key: (
            statistics.median(rates[key]),
            statistics.median(cpu_rates[key]),
            float((outputs[key] - reference).abs().max()),
            float((outputs[key] - reference).abs().max() / reference.abs().max()),
        )
        for key in encoders
    }


def quality(runtime: str, precision: str) -> dict:
    """Dev CIDEr on Flickr8k and COCO, the examples' captions and COCO dev VQA accuracy."""
    parts = {d: load_caption_dataset(d, DATA / d, "dev") for d in ("flickr8k", "coco")}
    captions, *_ = caption([it.path for its in parts.values() for it in its], runtime, precision)
    report = {
        d: corpus_scores(
            {it.image_id: captions[str(it.path)] for it in its},
            {it.image_id: it.captions for it in its},
            metrics=["CIDEr"],
        )["CIDEr"]
        for d, its in parts.items()
    }
    report["examples"] = caption(EXAMPLES, runtime, precision)[0]
    report["vqa"] = vqa_figures(Captioner.from_pretrained(runtime=runtime, precision=precision))["vqa_accuracy"]
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, default=DATA / "flickr8k/images", help="folder of JPEGs")
    p.add_argument("--n", type=int, default=1000, help="images captioned end to end (default: 1000)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the end-to-end runs (default: 2)")
    p.add_argument("--quality", action="store_true", help="also dev CIDEr, the examples and VQA accuracy")
    args = p.parse_args()
    paths = sorted(args.images.glob("*.jpg"))[: args.n]
    configs = configurations()
    auto = resolve_runtime("auto", "auto")
    print(
        f"CPU: native precisions {', '.join(native_precisions())}; {torch.get_num_threads()} threads; auto tries "
        f"{', '.join(r.name for r in auto)}; {len(paths)} images from {args.images}"
    )
    for runtime, precision in configs:  # the export is made once per machine, not timed
        caption(EXAMPLES[:1], runtime, precision)
    runs: dict = {key: [] for key in configs}
    for _ in range(args.rounds):  # first, while this process is small: a child's peak RSS counts its fork of it
        for key in configs:
            runs[key].append(caption(paths, *key)[1:])
    encoder = encoder_figures(paths)
    print(
        "| runtime | precision | end to end img/s (rounds) | × torch fp32 (median; rounds) | × in CPU time | "
        "peak RSS | encoder alone img/s (per CPU s) | max feature diff (relative) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base = runs[("torch", "fp32")]
    for key in configs:
        rates = [len(paths) / seconds for seconds, _, _ in runs[key]]
        ratios = [b[0] / seconds for (seconds, _, _), b in zip(runs[key], base)]
        cpu_ratio = sum(b[1] for b in base) / sum(cpu for _, cpu, _ in runs[key])
        rate, cpu_rate, diff, relative = encoder[key]
        print(
            f"| {key[0]} | {key[1]} | {' / '.join(f'{r:.1f}' for r in rates)} | "
            f"{statistics.median(ratios):.2f} ({' / '.join(f'{r:.2f}' for r in ratios)}) | {cpu_ratio:.2f} | "
            f"{max(rss for _, _, rss in runs[key]):.0f} MB | {rate:.1f} ({cpu_rate:.1f}) | "
            f"{diff:.2g} ({relative:.2g}) |"
        )
    if args.quality:
        reports = {key: quality(*key) for key in configs}
        ref = reports[("torch", "fp32")]
        print("\n| runtime | precision | Flickr8k dev CIDEr (Δ) | COCO dev CIDEr (Δ) | examples unchanged | COCO VQA |")
        print("|---|---|---|---|---|---|")
        for key, r in reports.items():
            same = sum(r["examples"][k] == ref["examples"][k] for k in ref["examples"])
            print(
                f"| {key[0]} | {key[1]} | {r['flickr8k']:.4f} ({r['flickr8k'] - ref['flickr8k']:+.4f}) | "
                f"{r['coco']:.4f} ({r['coco'] - ref['coco']:+.4f}) | {same} of {len(ref['examples'])} | "
                f"{100 * r['vqa']:.2f}% |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
