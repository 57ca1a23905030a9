"""VQA baselines and targets, printed as one report.

1. DAQUAR, on the by-image validation split that ``captioner train-vqa`` uses by default: the most
   frequent training answer, the question-only model (the same model with the image removed) and
   image + question, both trained with train-vqa's default settings (best epoch on validation, mean
   over seeds) and scored by exact match.
2. easy-vqa: trained on its train set (model chosen on held-out train images), scored on its test set.
3. ``ask`` latency on the CPU with the shipped weights, once loaded: image decoding, encoding and answering.

    python benchmarks/bench_vqa.py --daquar ../shared/data/daquar --weights weights --threads 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from captioner.data import load_daquar, load_easy_vqa, split_by_image
from captioner.evaluation import vqa_report
from captioner.pipeline import _resolve
from captioner.train_vqa import VQATrainConfig, build_vqa_set, evaluate, image_features, train_vqa
from captioner.vqa import VQAPredictor


def daquar_baselines(cfg: VQATrainConfig, seeds: list[int]) -> dict[str, dict]:
    """Most-frequent answer, question-only and image + question on one by-image split.

    The two models are trained with every seed in ``seeds`` and their best validation accuracies
    averaged: on 1,400 validation questions one run's figure moves by about a point with the seed.
    """
    train, val = split_by_image(load_daquar(cfg.root), cfg.val_fraction, cfg.split_seed)
    top = Counter(e.answers[0] for e in train).most_common(1)[0][0]
    frequent = vqa_report({e.question_id: top for e in val}, {e.question_id: e.answers for e in val}, metric="exact")
    out = {"most frequent": {"accuracy": frequent["accuracy"], "answer": top}}
    for name, use_image in (("question only", False), ("image + question", True)):
        runs = [train_vqa(replace(cfg, use_image=use_image, seed=seed, out=f"{cfg.out}/{name}-{seed}")) for seed in seeds]
        out[name] = {"accuracy": statistics.mean(r["accuracy"] for r in runs),
                     "runs": [{"seed": seed, "accuracy": r["accuracy"], "epoch": r["epoch"]} for seed, r in zip(seeds, runs)]}
    out["split"] = {"train questions": len(train), "val questions": len(val),
                    "val images": len({e.image_id for e in val})}
    return out


def easy_vqa_test(cfg: VQATrainConfig) -> dict[str, float]:
    """Accuracy on the easy-vqa test set of the model chosen on held-out train images."""
    best = train_vqa(cfg)
    model = VQAPredictor.from_checkpoint(Path(cfg.out) / "best")
    test = load_easy_vqa("test")
    feats, _, rows = image_features(cfg.encoder, cfg.encoder_weights, test, cfg.cache_dir)
    answer_index = {a: i for i, a in enumerate(model.answers)}
    data = build_vqa_set(test, feats, None, rows, model.vocab, answer_index, "exact")
    scores = evaluate(model.model, data, model.answers, "exact")
    return {"test accuracy": scores["accuracy"], "val accuracy": best["accuracy"], "epoch": best["epoch"],
            "test questions": len(test)}


def ask_latency(weights: str | None, images: list[Path], questions: list[str], repeats: int) -> dict[str, float]:
    """Milliseconds per ``ask`` (a fresh image and question each time) after the model is loaded."""
    model = VQAPredictor.from_checkpoint(_resolve(weights, "vqa"))
    model.ask(images[0], questions[0])  # warm-up
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        model.ask(images[i % len(images)], questions[i % len(questions)])
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"median ms": statistics.median(times), "p90 ms": times[int(0.9 * (len(times) - 1))],
            "threads": torch.get_num_threads()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--daquar", default="../shared/data/daquar", help="DAQUAR folder (qa_train.csv, images/)")
    p.add_argument("--weights", help="weights folder with vqa/ (default: the shipped weights/)")
    p.add_argument("--epochs", type=int, help="DAQUAR epochs (default: train-vqa's default)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="DAQUAR training seeds to average")
    p.add_argument("--easy-vqa-epochs", type=int, default=20)
    p.add_argument("--skip", nargs="*", default=[], choices=["daquar", "easy-vqa", "latency"])
    p.add_argument("--repeats", type=int, default=50, help="timed ask calls")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = VQATrainConfig(root=args.daquar, out=f"{tmp}/daquar", threads=args.threads)
        if args.epochs:
            base = replace(base, epochs=args.epochs)
        if "daquar" not in args.skip:
            report["daquar"] = daquar_baselines(base, args.seeds)
        if "easy-vqa" not in args.skip:
            # Mirroring adds nothing to centred synthetic shapes, so easy-vqa skips its feature pass.
            report["easy-vqa"] = easy_vqa_test(replace(base, data="easy-vqa", root=None, out=f"{tmp}/easy",
                                                       epochs=args.easy_vqa_epochs, batch_size=128,
                                                       flip_augment=False, val_fraction=0.1))
    if "latency" not in args.skip:
        examples = load_daquar(args.daquar)[::97][:25]
        report["ask latency"] = ask_latency(args.weights, [e.path for e in examples],
                                            [e.question for e in examples], args.repeats)

    print("\n== VQA benchmark ==")
    if "daquar" in report:
        d = report["daquar"]
        print(f"DAQUAR by-image validation ({d['split']['val images']} images, {d['split']['val questions']} "
              f"questions; exact match):")
        print(f"  most frequent answer ({d['most frequent']['answer']!r}): {100 * d['most frequent']['accuracy']:.2f}%")
        for name in ("question only", "image + question"):
            runs = ", ".join(f"{100 * r['accuracy']:.2f}" for r in d[name]["runs"])
            print(f"  {name}: {100 * d[name]['accuracy']:.2f}% (mean of seeds {args.seeds}: {runs})")
        gain = 100 * (d["image + question"]["accuracy"] - d["question only"]["accuracy"])
        print(f"  image + question - question only: {gain:+.2f} points (target: >= 22% and >= +2)")
    if "easy-vqa" in report:
        e = report["easy-vqa"]
        print(f"easy-vqa test accuracy: {100 * e['test accuracy']:.2f}% on {e['test questions']} questions "
              f"(target >= 95%)")
    if "ask latency" in report:
        a = report["ask latency"]
        print(f"ask latency: median {a['median ms']:.1f} ms, p90 {a['p90 ms']:.1f} ms ({a['threads']} threads; "
              f"target <= 150 ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
