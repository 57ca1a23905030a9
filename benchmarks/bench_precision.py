"""fp32 against each reduced precision, side by side in one run: speed, memory and quality of the shipped weights.

    python benchmarks/bench_precision.py [--precisions fp32 bf16] [--emulated] [--encoders efficientnet-lite1 ...]

Each precision runs in a fresh process of its own (so that its peak RSS is its own), on the same images:
the Flickr8k dev (1,000) and COCO dev (300) images, captioned end to end with the weights' default
decoding (beam 3) by the library's batch loop, model loading included; then the COCO dev questions,
each image encoded once for all its questions, as ``ask --batch`` does. It prints, per precision:
images/s and the ratio to fp32 of the same run, peak RSS, BLEU-4 and CIDEr per dataset, VQA accuracy,
``ask --batch`` questions/s and its ratio, the encoder's multiply-adds per image and the rate it
achieved alone, and whether the six example photos get the same captions as in fp32.

A precision this machine does not run natively is skipped, unless ``--emulated``: then its quality
figures are real, but its speed is PyTorch's emulation, not what native hardware gives.
``--encoders`` adds end-to-end speed (not quality: the shipped decoder was trained on EfficientNet-Lite0)
with bigger encoders at their best native precision.
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

import torch
from torch import nn

from captioner import Captioner
from captioner.data.datasets import load_caption_dataset, load_vqa_dataset
from captioner.encoder import build_encoder
from captioner.images import load_image
from captioner.metrics.captions import corpus_scores
from captioner.metrics.vqa import vqa_report
from captioner.precision import Precision, native_precisions, resolve_precision

ROOT = Path(__file__).resolve().parent.parent
DATA = {"flickr8k": ROOT.parent / "shared/data/flickr8k", "coco": ROOT.parent / "shared/data/coco"}


def encoder_macs(encoder: nn.Module, size: int) -> int:
    """Multiply-adds of one image through the encoder's convolutions and linear layers."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += (
                output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            )
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in encoder.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        encoder(torch.zeros(1, 3, size, size, dtype=torch.uint8))
    for h in hooks:
        h.remove()
    return total


def worker(name: str, encoder_name: str | None, out: Path) -> None:
    """One precision's figures, measured in this process, written to ``out`` as JSON."""
    started = time.perf_counter()
    model = Captioner.from_pretrained(precision=Precision(name, reason="benchmark"))
    if encoder_name:  # speed only: the decoder reads the same 1280-d features, but was trained on Lite0's
        model.encoder = build_encoder(encoder_name)
    parts = {d: load_caption_dataset(d, root, "dev") for d, root in DATA.items()}
    items = [it for its in parts.values() for it in its]
    results = {
        item.image_id: nbest[0].text
        for item, nbest, _ in model.caption_files(items, path_of=lambda item: item.path, progress=False)
        if nbest
    }
    seconds = time.perf_counter() - started
    report = {
        "precision": name,
        "encoder": model.encoder.spec.name,
        "images": len(items),
        "images_per_s": len(items) / seconds,
    }
    size = model.encoder.preprocessing.image_size
    pixels = torch.stack([model.encoder.preprocess(load_image(it.path, size_hint=size)) for it in items[:128]])
    with torch.inference_mode(), model.runtime.autocast():
        model.encoder(pixels[:4])
        start = time.perf_counter()
        for chunk in pixels.split(4):
            model.encoder(chunk)
        report["encoder_images_per_s"] = len(pixels) / (time.perf_counter() - start)
    report["encoder_macs"] = encoder_macs(model.encoder, size)
    if not encoder_name:
        report["scores"] = {
            d: corpus_scores(
                {it.image_id: results[it.image_id] for it in its},
                {it.image_id: it.captions for it in its},
                metrics=["Bleu", "CIDEr"],
            )
            for d, its in parts.items()
        }
        report["examples"] = {
            p.name: c[0].text
            for p, c in zip(
                sorted((ROOT / "examples").glob("*.jpg")),
                model.caption_images(sorted((ROOT / "examples").glob("*.jpg"))),
            )
        }
        report.update(vqa_figures(model))
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(report))


def vqa_figures(model: Captioner) -> dict:
    """Accuracy on the COCO dev questions, and questions/s with each image encoded once for all its questions."""
    questions = load_vqa_dataset("coco", DATA["coco"], "dev")
    by_image: dict = {}
    for q in questions:
        by_image.setdefault(q.path, []).append(q)
    predictions, start = {}, time.perf_counter()
    for path, qs in by_image.items():
        features = model.vqa.preprocess([path])
        answers = model.vqa.answer(features.expand(len(qs), *features.shape[1:]), [q.question for q in qs], 1)
        predictions.update((q.question_id, a[0][0]) for q, a in zip(qs, answers))
    seconds = time.perf_counter() - start
    accuracy = vqa_report(predictions, {q.question_id: q.answers for q in questions})["accuracy"]
    return {"vqa_accuracy": accuracy, "questions_per_s": len(questions) / seconds, "questions": len(questions)}


def run_worker(name: str, encoder_name: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, __file__, "--worker", name, "--out", str(out)]
        subprocess.run(
            cmd + (["--encoder", encoder_name] if encoder_name else []), check=True, stderr=subprocess.DEVNULL
        )
        return json.loads(out.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16", "fp16"],
        help="precisions to compare with fp32 (default: fp32 bf16 fp16, those native here)",
    )
    p.add_argument("--emulated", action="store_true", help="also run precisions not native here (quality figures)")
    p.add_argument("--encoders", nargs="*", default=[], help="bigger encoders to time end to end (default: none)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--encoder", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.encoder, Path(args.out))
        return 0

    native = native_precisions()
    print(f"native precisions on this CPU: {', '.join(native)}; auto picks {resolve_precision('auto').name}")
    names = ["fp32"] + [n for n in dict.fromkeys(args.precisions) if n != "fp32" and (n in native or args.emulated)]
    for skipped in sorted(set(args.precisions) - set(names)):
        print(f"{skipped}: skipped (not native on this CPU; --emulated runs it for its quality figures)")
    reports = [run_worker(n) for n in names]
    base = reports[0]
    print(
        f"\n{base['images']} dev images (Flickr8k 1,000 + COCO 300), beam 3, model loading included; "
        f"{base['questions']} COCO dev questions"
    )
    header = (
        "precision",
        "img/s",
        "x fp32",
        "peak RSS",
        "Flickr8k B4/CIDEr",
        "COCO B4/CIDEr",
        "VQA acc",
        "ask q/s",
        "x fp32",
        "enc GMAC/img",
        "enc GMAC/s",
        "examples same",
    )
    print(" | ".join(header))
    for r in reports:
        s = r["scores"]
        same = sum(r["examples"][k] == base["examples"][k] for k in base["examples"])
        emulated = "" if r["precision"] in native else " (emulated)"
        print(
            " | ".join(
                [
                    r["precision"] + emulated,
                    f"{r['images_per_s']:.1f}",
                    f"{r['images_per_s'] / base['images_per_s']:.2f}",
                    f"{r['peak_rss_mb']:.0f} MB",
                    f"{s['flickr8k']['Bleu_4']:.4f} / {s['flickr8k']['CIDEr']:.4f}",
                    f"{s['coco']['Bleu_4']:.4f} / {s['coco']['CIDEr']:.4f}",
                    f"{100 * r['vqa_accuracy']:.2f}%",
                    f"{r['questions_per_s']:.1f}",
                    f"{r['questions_per_s'] / base['questions_per_s']:.2f}",
                    f"{r['encoder_macs'] / 1e9:.3f}",
                    f"{r['encoder_macs'] * r['encoder_images_per_s'] / 1e9:.1f}",
                    f"{same} of {len(base['examples'])}",
                ]
            )
        )
    for r in reports[1:]:
        for name, caption in r["examples"].items():
            if caption != base["examples"][name]:
                print(f"  {r['precision']} {name}: {caption!r} (fp32: {base['examples'][name]!r})")
    for encoder_name in args.encoders:
        r = run_worker(resolve_precision("auto").name, encoder_name)
        print(
            f"{encoder_name} at {r['precision']}: {r['images_per_s']:.1f} img/s end to end "
            f"({r['images_per_s'] / base['images_per_s']:.2f} x Lite0 fp32), encoder alone "
            f"{r['encoder_images_per_s']:.1f} img/s, {r['encoder_macs'] / 1e9:.3f} GMAC/img, peak RSS "
            f"{r['peak_rss_mb']:.0f} MB (speed only: the shipped decoder was trained on Lite0 features)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
