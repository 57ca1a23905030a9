"""Caption metrics exactly as the coco-caption toolkit (pycocoevalcap) computes them.

Scores come from pycocoevalcap's own scorers (Bleu, Meteor, Rouge, Cider, Spice) after its own
tokenization: Stanford PTBTokenizer, then punctuation removal. PTBTokenizer and METEOR need Java;
without it, evaluation tokenizes with the Python port (:mod:`captioner.ptb`, same tokens) and
skips METEOR and SPICE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..progress import progress_bar
from .ptb import java_available, tokenize_captions

METRICS = ("Bleu", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
SHOW_STAGES = 10_000  # captions from which scoring shows its stages on stderr (fewer take seconds)
MAX_SCORED_WORDS = 200  # longer captions are cut: METEOR (Java) takes minutes on a few of 10,000 words, and then fails


def cut(caption: str) -> str:
    """``caption`` cut to its first :data:`MAX_SCORED_WORDS` words (split at white space); unchanged when it is
    shorter."""
    words = caption.split(maxsplit=MAX_SCORED_WORDS)
    return caption if len(words) <= MAX_SCORED_WORDS else " ".join(words[:MAX_SCORED_WORDS])


def spice_available() -> bool:
    """SPICE needs the Stanford CoreNLP 3.6.0 jars, which pycocoevalcap downloads on first use; we never do."""
    import pycocoevalcap.spice

    lib = Path(pycocoevalcap.spice.__file__).parent / "lib"
    return all((lib / f"stanford-corenlp-3.6.0{s}.jar").exists() for s in ("", "-models"))


def _scorer(name: str):
    if name == "Bleu":
        from pycocoevalcap.bleu.bleu import Bleu

        return Bleu(4)
    if name == "METEOR":
        from pycocoevalcap.meteor.meteor import Meteor

        return Meteor()
    if name == "ROUGE_L":
        from pycocoevalcap.rouge.rouge import Rouge

        return Rouge()
    if name == "CIDEr":
        from pycocoevalcap.cider.cider import Cider

        return Cider()
    from pycocoevalcap.spice.spice import Spice

    return Spice()


@dataclass
class CaptionScores:
    """One evaluation: corpus scores under pycocoevalcap's names and scales, and per-image scores."""

    corpus: dict[str, float]
    per_image: dict[str, list[float]]  # metric -> one score per image, in ``image_ids`` order
    image_ids: list
    tokenizer: str  # "java" (pycocoevalcap's PTBTokenizer) or "python" (ptb.ptb_tokenize)
    skipped: list[str] = field(default_factory=list)  # "METRIC: why" for requested metrics that did not run


def check_coverage(results: Mapping, references: Mapping) -> list[str]:
    """Warnings about what ``results`` cover; ValueError when a result has no references to score against."""
    if not results:
        raise ValueError("no captions to evaluate")
    orphans = [i for i in results if not references.get(i)]
    if orphans:
        raise ValueError(
            f"{len(orphans)} of {len(results)} result image(s) have no reference captions "
            f"(first: {orphans[0]!r}); do the ids match the reference file?"
        )
    warnings = []
    if len(results) < len(references):
        missing = [i for i in references if i not in results]
        warnings.append(
            f"results cover {len(results)} of {len(references)} reference images "
            f"(first missing: {missing[0]!r}); scoring those {len(results)} only"
        )
    if len(results) == 1:
        warnings.append(
            "only one image: CIDEr-D is meaningless on one image (its document frequencies "
            "come from that image's references alone)"
        )
    long = [i for i in results if cut(results[i]) != results[i] or any(cut(r) != r for r in references[i])]
    if long:
        warnings.append(
            f"{len(long)} image(s) have captions of over {MAX_SCORED_WORDS} words (first: {long[0]!r}); "
            f"scoring their first {MAX_SCORED_WORDS} words"
        )
    return warnings


def evaluate_captions(
    results: Mapping, references: Mapping, metrics: Sequence[str] | None = None, tokenizer: str = "auto"
) -> CaptionScores:
    """Score ``results`` ({image id: caption}) against ``references`` ({image id: [captions]}).

    ``metrics`` picks scorers from :data:`METRICS` (default: all that can run). ``tokenizer`` is
    "java", "python" or "auto" (Java when installed). METEOR and SPICE need Java; they are skipped,
    and listed in ``skipped``, when it or SPICE's models are missing. Captions are scored on their first
    :data:`MAX_SCORED_WORDS` words (:func:`check_coverage` warns when one is longer).
    """
    wanted = list(METRICS if metrics is None else metrics)
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)} (choose from {', '.join(METRICS)})")
    check_coverage(results, references)
    java = java_available()
    if tokenizer == "auto":
        tokenizer = "java" if java else "python"
    skipped = []
    for name in ("METEOR", "SPICE"):
        if name in wanted and not java:
            skipped.append(f"{name}: needs Java")
    if "SPICE" in wanted and java and not spice_available():
        skipped.append("SPICE: Stanford CoreNLP models not installed (run pycocoevalcap's get_stanford_models)")
    ids = list(results)
    scored = [m for m in METRICS if m in wanted and not any(s.startswith(m + ":") for s in skipped)]
    # pycocoevalcap's scorers show no progress, and 200,000 captions take minutes: say which stage is running
    stages = progress_bar(len(scored) + 1, f"scoring {len(ids)} captions", "stage", disable=len(ids) < SHOW_STAGES)
    stages.set_postfix_str("tokenizing")
    gts = tokenize_captions({i: [cut(r) for r in references[i]] for i in ids}, tokenizer)
    res = tokenize_captions({i: [cut(results[i])] for i in ids}, tokenizer)
    corpus, per_image = {}, {}
    for name in scored:
        stages.update()
        stages.set_postfix_str(name)
        scorer = _scorer(name)
        score, scores = scorer.compute_score(gts, res, verbose=0) if name == "Bleu" else scorer.compute_score(gts, res)
        if name == "Bleu":
            for n in range(4):
                corpus[f"Bleu_{n + 1}"], per_image[f"Bleu_{n + 1}"] = float(score[n]), [float(s) for s in scores[n]]
        elif name == "SPICE":  # pycocoevalcap's Spice returns images in sorted id order
            by_id = dict(zip(sorted(ids), (s["All"]["f"] for s in scores)))
            corpus[name], per_image[name] = float(score), [float(by_id[i]) for i in ids]
        else:
            corpus[name], per_image[name] = float(score), [float(s) for s in scores]
    stages.update()
    stages.close()
    return CaptionScores(corpus, per_image, ids, tokenizer, skipped)


def corpus_scores(
    results: Mapping, references: Mapping, metrics: Sequence[str] | None = None, tokenizer: str = "python"
) -> dict[str, float]:
    """Corpus scores only; the Java-free tokenizer by default, so training can call it every epoch."""
    return evaluate_captions(results, references, metrics, tokenizer).corpus
