"""Evaluation figures: speed, tokenizer agreement with pycocoevalcap's PTBTokenizer, equality of scores.

    python benchmarks/bench_eval.py [--flickr8k ../shared/data/flickr8k]

1. Speed: 5,000 hypotheses against 25,000 references, BLEU + ROUGE-L + CIDEr-D, Python tokenizer.
2. With Java: the Python tokenizer against PTBTokenizer on every caption of Flickr8k.token.txt.
3. With Java: our scores against the toolkit's own pipeline (PTBTokenizer + pycocoevalcap scorers) on the
   Flickr8k dev references, for a spread of hypotheses; prints the largest absolute difference.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from captioner.data.captions import read_flickr8k_tokens, read_split_list
from captioner.metrics.captions import evaluate_captions
from captioner.metrics.ptb import java_available, ptb_tokenize, tokenize_captions

METRICS = ["Bleu", "ROUGE_L", "CIDEr"]
SPREAD = {
    "perfect": lambda refs, other: refs[0],
    "empty": lambda refs, other: "",
    "repeated words": lambda refs, other: " ".join([refs[0].split()[-2]] * 8),
    "punctuation": lambda refs, other: 'A dog , runs !!! ( fast ) ... in the "park" ; isn\'t it ? ' + other,
    "unicode": lambda refs, other: "Un café naïve — über straße ☺ 😀 " + other,
    "very long": lambda refs, other: " ".join(refs * 10),
}


def speed(captions: list[str]) -> None:
    rng = random.Random(0)
    refs = {i: [rng.choice(captions) for _ in range(5)] for i in range(5000)}
    results = {i: rng.choice(captions) for i in refs}
    wall, cpu = time.perf_counter(), time.process_time()
    evaluate_captions(results, refs, METRICS, tokenizer="python")
    print(
        f"speed: 5,000 hypotheses vs 25,000 references (BLEU, ROUGE-L, CIDEr-D, Python tokenizer): "
        f"{time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU"
    )


def tokenizer_agreement(captions: list[str]) -> None:
    java = tokenize_captions({i: [c] for i, c in enumerate(captions)}, "java")
    python = ptb_tokenize(captions)
    same = sum(java[i][0] == p for i, p in enumerate(python))
    print(f"tokenizer: {same:,} of {len(captions):,} captions tokenized identically to PTBTokenizer")
    for i, p in enumerate(python):
        if java[i][0] != p:
            print(f"  differs: {captions[i]!r}: java {java[i][0]!r} python {p!r}")


def toolkit_equality(refs: dict) -> None:
    rng = random.Random(1)
    others = [c for caps in refs.values() for c in caps]
    worst = 0.0
    for kind, make in SPREAD.items():
        results = {i: make(r, rng.choice(others)) for i, r in refs.items()}
        ours = evaluate_captions(results, refs, METRICS, tokenizer="python").corpus
        gts, res = tokenize_captions(refs, "java"), tokenize_captions({i: [c] for i, c in results.items()}, "java")
        toolkit = dict(zip([f"Bleu_{n}" for n in range(1, 5)], Bleu(4).compute_score(gts, res, verbose=0)[0]))
        toolkit["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
        toolkit["CIDEr"] = Cider().compute_score(gts, res)[0]
        diff = max(abs(ours[k] - v) for k, v in toolkit.items())
        worst = max(worst, diff)
        print(f"  {kind:<15} CIDEr {toolkit['CIDEr']:.4f}  Bleu_4 {toolkit['Bleu_4']:.4f}  max |diff| {diff:.1e}")
    print(f"equality with pycocoevalcap on {len(refs)} Flickr8k dev images: max |diff| {worst:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flickr8k", default=str(Path(__file__).resolve().parents[2] / "shared/data/flickr8k"))
    root = Path(parser.parse_args().flickr8k)
    if not (root / "Flickr8k.token.txt").exists():
        raise SystemExit(f"{root}/Flickr8k.token.txt not found (give --flickr8k)")
    lines = (root / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    captions = [line.split("\t", 1)[1] for line in lines if line.strip()]
    speed(captions)
    if not java_available():
        print("Java not found: tokenizer and toolkit comparisons skipped")
        return
    tokenizer_agreement(captions)
    all_refs = read_flickr8k_tokens(root / "Flickr8k.token.txt")
    dev = [n for n in read_split_list(root / "Flickr_8k.devImages.txt") if n in all_refs]
    toolkit_equality({n: all_refs[n] for n in dev})


if __name__ == "__main__":
    main()
