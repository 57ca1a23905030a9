"""Caption metrics as the coco-caption toolkit (pycocoevalcap) computes them."""
from __future__ import annotations

from typing import Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from .vocab import tokenize


def corpus_scores(results: dict, references: dict, metrics: Sequence[str] | None = None) -> dict[str, float]:
    """Corpus scores of ``results`` ({id: caption}) against ``references`` ({id: [captions]})."""
    ids = list(results)
    res = {i: [" ".join(tokenize(results[i]))] for i in ids}
    gts = {i: [" ".join(tokenize(r)) for r in references[i]] for i in ids}
    out = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"Bleu_{n + 1}": b for n, b in enumerate(bleu)})
    out["CIDEr"], _ = Cider().compute_score(gts, res)
    return out
