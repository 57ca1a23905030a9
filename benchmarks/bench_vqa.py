"""VQA accuracy per dataset beside its baselines, easy-vqa, and ``ask`` latency, printed as one report.

1. Every dataset of the shipped VQA weights' training mix (DAQUAR's by-image validation split, COCO
   dev questions), on the validation questions that ``captioner train-vqa`` used: the shipped weights
   (image + question), the question-only model (the same recipe with the image removed, trained here,
   best epoch on validation, mean over seeds) and a question prior (the most common training answer
   for the question's first two words). Questions with three or more human answers are scored by
   the soft VQA accuracy, the others by exact match.
2. easy-vqa: trained on its train set (model chosen on held-out train images), scored on its test set.
3. ``ask`` latency on the CPU with the shipped weights, once loaded: image decoding, encoding and answering.
4. A breakdown on the COCO dev questions of one or more weights (``--breakdown NAME=WEIGHTS``, e.g. with and
   without the generated questions, and question-only): accuracy overall, by question type (yes/no, number,
   color, other: ``captioner.metrics.vqa.question_type``, from the question's words), by source (vqa_v2,
   okvqa, ...) and by metric (``vqa``: the soft accuracy; ``exact``: exact match, for questions with fewer than
   three answers), answered as ``ask`` answers (fp32 features computed afresh, not the training cache).
5. Multiple choice, 4-way, on COCO dev: each question's most common human answer and 3 distractors drawn (seed
   0) from the most common answers to other dev questions with the same first two words (any other dev
   question's when fewer than 3 remain), none of them an answer a human gave to the question. Accuracy of the
   weights' own rule (``captioner.choices``, recorded in their config.json's ``"choices"``), and of the VQA softmax
   alone with out-of-vocabulary candidates at 0. The rule is fitted on the same 4-way items built from COCO *train*
   questions, and recorded in the VQA config.json's ``"choices"``, by ``captioner fit-choices`` (no benchmark
   writes weights).

    python benchmarks/bench_vqa.py --weights weights --threads 2
    python benchmarks/bench_vqa.py --skip mix easy-vqa latency --breakdown shipped=weights --breakdown new=runs/vqa/best
    python benchmarks/bench_vqa.py --skip mix easy-vqa latency breakdown
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import fields, replace
from pathlib import Path

import torch

from captioner.answers import normalize_answer
from captioner.data.datasets import load_caption_dataset, load_vqa_dataset
from captioner.data.vqa import VQAExample, load_easy_vqa
from captioner.metrics.concepts import pope_items, yes_no_scores
from captioner.metrics.vqa import question_type, vqa_report
from captioner.pipeline import VQAPredictor
from captioner.pretrained import resolve_weights
from captioner.train.fit_choices import choice_items
from captioner.train.vqa import VQATrainConfig, evaluate_weights, load_splits, train_vqa
from captioner.vocab import tokenize_words

TARGETS = {"daquar": (0.24, None), "coco": (0.46, 8.0)}  # accuracy, and points above question-only
CHOICES_TARGET = 0.80  # 4-way multiple choice on COCO dev (issue 41)


def question_prior(train: list[VQAExample], val: list[VQAExample]) -> float:
    """Accuracy of answering each question with the most common training answer for its first two words."""
    by_start, overall = defaultdict(Counter), Counter()
    for e in train:
        answers = Counter(normalize_answer(a) for a in e.answers)
        by_start[" ".join(tokenize_words(e.question)[:2])].update(answers)
        overall.update(answers)

    def guess(question: str) -> str:
        return (by_start.get(" ".join(tokenize_words(question)[:2])) or overall).most_common(1)[0][0]

    predictions = {e.question_id: guess(e.question) for e in val}
    return vqa_report(predictions, {e.question_id: e.answers for e in val})["accuracy"]


def shipped_accuracy(model: VQAPredictor, cfg: VQATrainConfig, val: list[VQAExample]) -> float:
    """Accuracy of the shipped weights on ``val``."""
    return evaluate_weights(model.model, model.vocab, model.answers, val, cfg)["accuracy"]


def recipe(weights: str | None) -> VQATrainConfig:
    """The training config the VQA weights record: their datasets and validation splits."""
    folder, _ = resolve_weights(weights, "vqa")
    training = json.loads((folder / "config.json").read_text())["training"]
    known = {f.name for f in fields(VQATrainConfig)}
    return VQATrainConfig(**{k: tuple(v) if k == "data" else v for k, v in training.items() if k in known})


def mix_baselines(weights: str | None, out: str, seeds: list[int], threads: int) -> dict[str, dict]:
    """Per dataset of the shipped recipe: the shipped weights, question-only (mean over ``seeds``) and the prior."""
    folder, _ = resolve_weights(weights, "vqa")
    cfg = replace(recipe(weights), threads=threads, save_every=0)
    model = VQAPredictor.from_pretrained(folder)
    blind = [
        train_vqa(replace(cfg, use_image=False, seed=seed, out=f"{out}/blind-{seed}"), overwrite=True) for seed in seeds
    ]
    report = {}
    for name, _, train, val in load_splits(cfg):
        report[name] = {
            "image + question": shipped_accuracy(model, cfg, val),
            "question only": statistics.mean(b["datasets"][name]["accuracy"] for b in blind),
            "question prior": question_prior(train, val),
            "val questions": len(val),
            "val images": len({e.image_id for e in val}),
        }
    return report


def easy_vqa_test(cfg: VQATrainConfig) -> dict[str, float]:
    """Accuracy on the easy-vqa test set of the model chosen on held-out train images."""
    best = train_vqa(cfg)
    model = VQAPredictor.from_pretrained(Path(cfg.out) / "best")
    test = load_easy_vqa("test")
    scores = evaluate_weights(model.model, model.vocab, model.answers, test, cfg)
    return {
        "test accuracy": scores["accuracy"],
        "val accuracy": best["accuracy"],
        "epoch": best["epoch"],
        "test questions": len(test),
    }


def ask_latency(weights: str | None, images: list[Path], questions: list[str], repeats: int) -> dict[str, float]:
    """Milliseconds per ``ask`` (a fresh image and question each time) after the model is loaded, as ``captioner
    ask`` loads it (with the caption weights); with concept weights, also without them, the calls alternating."""
    model = VQAPredictor.from_pretrained(weights, words=True)
    model.ask(images[0], questions[0])  # warm-up
    apart = model.concepts and not model.model.config.concept_dim  # a head that reads them needs them
    variants = {"": model.concepts} | ({"no concepts ": None} if apart else {})
    times = {name: [] for name in variants}
    for i in range(repeats):
        for name, concepts in variants.items():
            model.concepts = concepts
            start = time.perf_counter()
            model.ask(images[i % len(images)], questions[i % len(questions)])
            times[name].append((time.perf_counter() - start) * 1000)
    report = {"threads": torch.get_num_threads()}
    for name, ms in times.items():
        ms.sort()
        report |= {f"{name}median ms": statistics.median(ms), f"{name}p90 ms": ms[int(0.9 * (len(ms) - 1))]}
    return report


def breakdown(weights: dict[str, str | None], coco: str) -> dict[str, dict]:
    """COCO dev accuracy of each named weights, overall, by question type and by source."""
    examples = load_vqa_dataset("coco", coco, "dev")
    by_image = defaultdict(list)
    for e in examples:
        by_image[e.path].append(e)
    references = {e.question_id: e.answers for e in examples}
    kinds = {
        "type": {e.question_id: question_type(e.question) for e in examples},
        "source": {e.question_id: e.answer_type or "unknown" for e in examples},
    }
    out = {}
    for name, folder in weights.items():
        model = VQAPredictor.from_pretrained(folder, precision="fp32", words=True)  # as `captioner ask` loads it
        apart = model.concepts and not model.model.config.concept_dim  # a head that reads them needs them
        variants = {name: model.concepts} | ({f"{name} no concepts": None} if apart else {})
        for variant, concepts in variants.items():
            model.concepts = concepts
            predictions, sure = {}, {}
            for path, questions in by_image.items():
                features = model.preprocess([path])
                answers = model.answer(
                    features.expand(len(questions), *features.shape[1:]), [q.question for q in questions], 1
                )
                predictions.update((q.question_id, a[0][0]) for q, a in zip(questions, answers))
                sure.update((q.question_id, bool(model.sure(a[0][1], a[0][0]))) for q, a in zip(questions, answers))
            overall = vqa_report(predictions, references)
            out[variant] = {"accuracy": overall["accuracy"], "metric": overall["by_metric"]} | {
                by: vqa_report(predictions, references, types)["per_type"] for by, types in kinds.items()
            }
            yes_no_sure = {q: p for q, p in predictions.items() if kinds["type"][q] == "yes/no" and sure[q]}
            out[variant]["yes/no sure"] = vqa_report(yes_no_sure, references) if yes_no_sure else {}
            out[variant]["daquar"] = daquar_accuracy(model, folder)
    return out


def daquar_accuracy(model: VQAPredictor, weights: str | None) -> float | None:
    """Exact-match accuracy on the DAQUAR by-image validation split the weights were trained with, answered as
    ``ask`` answers (None: their recipe has no DAQUAR)."""
    val = [e for name, _, _, examples in load_splits(recipe(weights)) if name == "daquar" for e in examples]
    if not val:
        return None
    by_image = defaultdict(list)
    for e in val:
        by_image[e.path].append(e)
    predictions = {}
    for path, questions in by_image.items():
        features = model.preprocess([path])
        answers = model.answer(features.expand(len(questions), *features.shape[1:]), [q.question for q in questions], 1)
        predictions.update((q.question_id, a[0][0]) for q, a in zip(questions, answers))
    return vqa_report(predictions, {e.question_id: e.answers for e in val})["accuracy"]


def pope_report(weights: str | None, coco: str) -> dict:
    """POPE-style existence questions on COCO dev ("is there a <object> in the image?", 3 objects named by 2 or
    more of an image's captions and 3 named by none, :func:`captioner.metrics.concepts.pope_items`), answered as
    ``ask`` answers: with the concept detectors when the weights have them, and without."""
    images = load_caption_dataset("coco", coco, "dev")
    items = pope_items([i.captions for i in images])
    model = VQAPredictor.from_pretrained(weights, precision="fp32")
    variants = {"with concepts": model.concepts} if model.concepts else {}
    out = {}
    alone = {} if model.model.config.concept_dim else {"VQA head alone": None}  # a head that reads them needs them
    for variant, concepts in (variants | alone).items():
        model.concepts = concepts
        said = []
        for i, image in enumerate(images):
            asked = [(o, present) for j, o, present in items if j == i]
            if not asked:
                continue
            features = model.preprocess([image.path])
            questions = [f"is there {'an' if o[0] in 'aeiou' else 'a'} {o} in the image?" for o, _ in asked]
            answers = model.answer(features.expand(len(asked), *features.shape[1:]), questions, 1)
            said += [a[0][0] == "yes" for a in answers]
        out[variant] = yes_no_scores(said, [present for _, _, present in items])
    return out


def choices_report(weights: str | None, coco: str) -> dict:
    """4-way accuracy on COCO dev of the weights' rule (``config.json``'s ``choices``) and of the VQA softmax alone
    (out-of-vocabulary at 0)."""
    model = VQAPredictor.from_pretrained(weights, precision="fp32", words=True)
    dev = torch.stack(choice_items(model, load_vqa_dataset("coco", coco, "dev")))  # (N, 4, 6)
    rule = model.choice_weights

    def accuracy(scores: torch.Tensor) -> float:
        return float((scores.argmax(-1) == 0).float().mean())

    in_vocab = dev[..., 1] == 0
    w = rule.vector()
    return {
        "questions": len(dev),
        "out-of-vocabulary candidates": float((~in_vocab).float().mean()),
        "right answer out of vocabulary": float((~in_vocab[:, 0]).float().mean()),
        "VQA softmax alone (out of vocabulary: 0)": accuracy(torch.where(in_vocab, dev[..., 0].exp(), 0.0)),
        "the weights' rule": accuracy(dev @ w),
        "the weights' rule weights": vars(rule),
    }


def print_breakdown(report: dict[str, dict]) -> None:
    names = list(report)
    print("COCO dev breakdown (accuracy %, questions):")
    print(f"  {'':<18}" + "".join(f"{n[:14]:>15}" for n in names))
    print(f"  {'all':<18}" + "".join(f"{100 * report[n]['accuracy']:15.2f}" for n in names))
    for by in ("type", "source", "metric"):  # metric exact: questions with 1-2 answers, scored by exact match
        for group, figures in report[names[0]][by].items():
            cells = "".join(f"{100 * report[n][by].get(group, {}).get('accuracy', float('nan')):15.2f}" for n in names)
            print(f"  {by + ' ' + group:<18}{cells}   ({figures['questions']})")
    cells = "".join(f"{100 * (report[n]['daquar'] or float('nan')):15.2f}" for n in names)
    print(f"  {'DAQUAR val':<18}{cells}   (exact match)")
    cells = "".join(f"{100 * report[n]['yes/no sure'].get('accuracy', float('nan')):15.2f}" for n in names)
    counts = "/".join(str(report[n]["yes/no sure"].get("questions", 0)) for n in names)
    print(f"  {'yes/no sure':<18}{cells}   ({counts}; target >= 85%)")


def print_report(report: dict) -> None:
    """The figures of every section run, beside their targets."""
    print("\n== VQA benchmark ==")
    for name, d in report.get("mix", {}).items():
        print(f"{name} validation ({d['val images']} images, {d['val questions']} questions):")
        for key in ("question prior", "question only", "image + question"):
            print(f"  {key:<17} {100 * d[key]:6.2f}%")
        gain = 100 * (d["image + question"] - d["question only"])
        target, margin = TARGETS.get(name, (None, None))
        goal = (
            "" if target is None else f"; target >= {100 * target:.0f}%" + (f" and >= +{margin:.0f}" if margin else "")
        )
        print(f"  image + question - question only: {gain:+.2f} points{goal}")
    if "easy-vqa" in report:
        e = report["easy-vqa"]
        print(
            f"easy-vqa test accuracy: {100 * e['test accuracy']:.2f}% on {e['test questions']} questions "
            f"(target >= 95%)"
        )
    if "ask latency" in report:
        a = report["ask latency"]
        print(
            f"ask latency: median {a['median ms']:.1f} ms, p90 {a['p90 ms']:.1f} ms ({a['threads']} threads; "
            f"target <= 150 ms)"
        )
        if "no concepts median ms" in a:
            print(
                f"  without the concept detectors: median {a['no concepts median ms']:.1f} ms (same calls, alternating)"
            )
    if "breakdown" in report:
        print_breakdown(report["breakdown"])
    if "pope" in report:
        print("POPE-style existence questions, COCO dev (target: accuracy >= 85%, yes-ratio 40-60%):")
        for variant, d in report["pope"].items():
            print(
                f"  {variant:<16} accuracy {100 * d['accuracy']:6.2f}%  F1 {100 * d['f1']:6.2f}  "
                f"yes-ratio {100 * d['yes_ratio']:6.2f}%  ({d['questions']} questions)"
            )
    if "choices" in report:
        c = report["choices"]
        print(
            f"4-way multiple choice, COCO dev ({c['questions']} questions; "
            f"{100 * c['out-of-vocabulary candidates']:.1f}% of candidates and "
            f"{100 * c['right answer out of vocabulary']:.1f}% of right answers outside the answer vocabulary):"
        )
        for name, value in c.items():
            if isinstance(value, float) and name not in (
                "out-of-vocabulary candidates",
                "right answer out of vocabulary",
            ):
                rule = f"  {c[name + ' weights']}" if name + " weights" in c else ""
                print(f"  {name:<42} {100 * value:6.2f}%{rule}")
        print(f"  target >= {100 * CHOICES_TARGET:.0f}%")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="weights folder with vqa/ (default: the shipped weights/)")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="question-only training seeds to average (default: 0)"
    )
    p.add_argument("--easy-vqa-epochs", type=int, default=20, help="easy-vqa training epochs (default: 20)")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["mix", "easy-vqa", "latency", "breakdown", "choices", "pope"],
        help="sections to skip (default: none)",
    )
    p.add_argument(
        "--breakdown",
        action="append",
        metavar="NAME=WEIGHTS",
        help="weights to break down on COCO dev; repeat to compare (default: shipped=--weights)",
    )
    p.add_argument("--coco", default="../shared/data/coco", help="the COCO folder (default: ../shared/data/coco)")
    p.add_argument("--repeats", type=int, default=50, help="timed ask calls (default: 50)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's default)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "mix" not in args.skip:
            report["mix"] = mix_baselines(args.weights, tmp, args.seeds, args.threads)
        if "easy-vqa" not in args.skip:
            # Mirroring adds nothing to centred synthetic shapes, so easy-vqa skips its feature pass.
            report["easy-vqa"] = easy_vqa_test(
                VQATrainConfig(
                    data=("easy-vqa",),
                    out=f"{tmp}/easy",
                    threads=args.threads,
                    epochs=args.easy_vqa_epochs,
                    batch_size=128,
                    flip_augment=False,
                    val_fraction=0.1,
                    val_split="",
                )
            )
    if "latency" not in args.skip:
        examples = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.jpg"))
        questions = ["what is in the picture?", "what color is the shirt?", "is there a person?", "how many are there?"]
        report["ask latency"] = ask_latency(args.weights, examples, questions, args.repeats)

    if "breakdown" not in args.skip:
        named = [b.partition("=") for b in args.breakdown or [f"shipped={args.weights or ''}"]]
        report["breakdown"] = breakdown({name: folder or None for name, _, folder in named}, args.coco)

    if "choices" not in args.skip:
        report["choices"] = choices_report(args.weights, args.coco)

    if "pope" not in args.skip:
        report["pope"] = pope_report(args.weights, args.coco)

    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
