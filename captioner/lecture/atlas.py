"""The cell atlas: what each recurrent cell tracks, found over a whole dev set rather than one caption.

    captioner atlas --data flickr8k:DIR --data coco:DIR --weights weights/caption --write   # its cells.json

Karpathy, Johnson & Fei-Fei found their quote, line-length and depth cells by looking across a dataset; ranking the
cells by how much they vary over one caption finds mostly position counters. So every dev caption is read by the
decoder (teacher forcing, dropout off: :func:`captioner.decoding.trace_batch`) and, for each cell of each state
(``c`` and ``h`` for the LSTM, ``h`` for the RNN), over every step of every caption:

- ``position_r``: the correlation of the cell's value with the position in the caption (words read so far);
- ``after`` / ``before``: the words on which the cell stands out most, once its linear trend with the position is
  removed: the word just read ("after 'on'") and the word that comes next ("before 'dog'"), each with its effect
  (mean of the detrended value after or before the word, in units of the state's typical deviation; words seen
  :data:`MIN_COUNT` times at least). ``sign`` is -1 when the cell stands out by going low;
- ``selectivity``: the largest such effect, which ranks the word-selective cells;
- ``tracks``: ``position`` when ``|position_r|`` is at least :data:`POSITION_R`, else ``word``; and ``label``, a
  few words made from these ("position (r +0.97)", "after on, in, at", "before colour words").

The atlas is a small JSON file shipped beside the weights (``cells.json``, checked by :mod:`captioner.schema`);
the Look inside tab of the app shows cells by what it says they track.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..data.datasets import CAPTION_DATASETS, DatasetSpec, load_caption_dataset
from ..decoder import CaptionDecoder
from ..decoding import trace_batch
from ..encoder import build_encoder
from ..features import batched, cached_features
from ..pretrained import Loaded, load_pretrained
from ..schema import ATLAS_FILE, ATLAS_FORMAT, TRACKS
from ..settings import check, setting
from ..vocab import SPECIALS, Vocabulary

TRACKS_SHOWN = {"word": "word-selective cells", "position": "position-tracking cells"}  # the app's choices too
POSITION_R = 0.6  # |correlation with the position| from which a cell counts as position-tracking
MIN_COUNT = 20  # steps after (or before) a word needed before the word can characterise a cell
TOP_WORDS = 3  # words kept per context
# Word classes a label names when most of a cell's top words belong to one (the lecture's "colour words").
WORD_CLASSES = {
    "colour words": {
        "black",
        "white",
        "red",
        "blue",
        "green",
        "yellow",
        "brown",
        "orange",
        "pink",
        "purple",
        "grey",
        "gray",
        "colorful",
        "dark",
        "silver",
        "tan",
    },
    "numbers": {"two", "three", "four", "five", "six", "several", "many", "one", "group"},
    "prepositions": {
        "on",
        "in",
        "at",
        "of",
        "with",
        "by",
        "near",
        "next",
        "under",
        "over",
        "through",
        "into",
        "behind",
        "across",
        "down",
        "up",
        "from",
        "to",
        "for",
        "around",
        "beside",
        "along",
    },
    "articles": {"a", "an", "the", "some"},
}


@dataclass
class AtlasConfig:
    """The settings of ``captioner atlas``."""

    data: tuple[str, ...] = setting(
        (),
        f"a caption dataset as FORMAT:FOLDER whose split is read, FORMAT one of "
        f"{', '.join(CAPTION_DATASETS)}; required",
        metavar="FORMAT:FOLDER",
    )
    weights: str | None = setting(
        None, "caption weights folder (or entry name) whose cells to map; none: the shipped caption weights"
    )
    split: str = setting("dev", "the split whose captions are read")
    max_captions: int = setting(0, "read at most this many captions of each dataset (0: all)", low=0, high=10**9)
    write: bool = setting(False, f"write {ATLAS_FILE} into the weights folder (else only print a summary)")
    figure: str | None = setting(None, "also draw the strongest cells of each kind over one dev caption into this PNG")
    figure_caption: int = setting(0, "the dev caption --figure draws (its number among all of them)", low=0, high=10**9)
    cache_dir: str | None = setting(None, "folder of cached image features (None: the default cache)")

    def __post_init__(self) -> None:
        check(self)
        if not self.data:
            raise ValueError(
                f"give the captions to read with --data FORMAT:FOLDER (formats: {', '.join(CAPTION_DATASETS)})"
            )


# ---------------------------------------------------------------- building


def _label(tracks: str, r: float, sign: int, context: str, words: list[str]) -> str:
    """A few words for what a cell tracks: its position trend, or its top words (or their class)."""
    if tracks == "position":
        return f"position (r {r:+.2f})"
    name = next((c for c, members in WORD_CLASSES.items() if sum(w in members for w in words) >= 2), None)
    low = " (low)" if sign < 0 else ""
    return f"{context} {name + ': ' if name else ''}{', '.join(words)}{low}"


def _effects(residual: np.ndarray, context: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per word (rows) and cell (columns), the mean of ``residual`` ``(steps, cells)`` over the steps whose context
    word is that word, in units of the whole state's typical deviation (the root mean square of ``residual``: one
    scale for all cells, so that a saturated cell, nearly constant, cannot stand out by a tiny wobble); and each
    word's step count. Special tokens count for nothing."""
    sums = np.zeros((vocab_size, residual.shape[1]))
    np.add.at(sums, context, residual)
    counts = np.bincount(context, minlength=vocab_size)
    effects = sums / np.maximum(counts, 1)[:, None] / (np.sqrt(np.mean(residual**2)) + 1e-12)
    effects[: len(SPECIALS)] = 0.0
    effects[counts < MIN_COUNT] = 0.0
    return effects, counts


def cell_entries(
    values: np.ndarray, position: np.ndarray, after: np.ndarray, before: np.ndarray, vocab: Vocabulary
) -> list[dict]:
    """The atlas entry of every cell, from its ``values`` ``(steps, cells)`` over all steps of all captions, with
    each step's ``position`` and the ids of the word just read (``after``) and of the next one (``before``)."""
    pos = (position - position.mean()) / (position.std() + 1e-12)
    centred = values - values.mean(0)
    slope = (centred * pos[:, None]).mean(0)  # (cells,): the least-squares trend per position-std
    r = slope / (centred.std(0) + 1e-12)
    residual = centred - pos[:, None] * slope  # (steps, cells): the values with the position trend removed
    effects = {"after": _effects(residual, after, len(vocab))[0], "before": _effects(residual, before, len(vocab))[0]}
    entries = []
    for cell in range(values.shape[1]):
        strongest = {name: e[:, cell][np.argmax(np.abs(e[:, cell]))] for name, e in effects.items()}
        context = max(strongest, key=lambda name: abs(strongest[name]))
        sign = 1 if strongest[context] >= 0 else -1
        top = {
            name: [int(w) for w in np.argsort(-sign * e[:, cell])[:TOP_WORDS] if sign * e[w, cell] > 0]
            for name, e in effects.items()
        }
        tracks = "position" if abs(r[cell]) >= POSITION_R else "word"
        words = {
            name: [[vocab.words[w], round(float(effects[name][w, cell]), 2)] for w in top[name]] for name in effects
        }
        label = _label(tracks, float(r[cell]), sign, context, [w for w, _ in words[context]])
        entries.append(
            {
                "label": label,
                "tracks": tracks,
                "position_r": round(float(r[cell]), 4),
                "selectivity": round(abs(float(strongest[context])), 4),
                "sign": sign,
                **words,
            }
        )
    return entries


def build_atlas(
    model: CaptionDecoder,
    features: torch.Tensor,
    captions: Sequence[list[int]],
    vocab: Vocabulary,
    batch_size: int = 256,
) -> dict:
    """The atlas of ``model``'s cells over ``captions`` (word ids, no markers), caption ``i`` read with the image
    ``features[i]``: ``{"format", "version", "captions", "steps", "cells": {kind: [entry per cell]}}``."""
    traced: dict[str, list[np.ndarray]] = {}
    position, after, before = [], [], []
    for rows in batched(range(len(captions)), batch_size):
        chunk = [list(captions[i]) for i in rows]
        for words, states in zip(chunk, trace_batch(model, features[rows.start : rows.stop], chunk)):
            for kind, v in states.items():  # row t: after <start> and t words
                traced.setdefault(kind, []).append(v.numpy())
            seq = [Vocabulary.start_id, *words, Vocabulary.end_id]
            position += range(len(words) + 1)
            after += seq[:-1]
            before += seq[1:]
    steps = [np.asarray(x) for x in (position, after, before)]
    cells = {kind: cell_entries(np.concatenate(v).astype(np.float64), *steps, vocab) for kind, v in traced.items()}
    return {"format": ATLAS_FORMAT, "version": 1, "captions": len(captions), "steps": len(position), "cells": cells}


def ranked(cells: Sequence[dict], tracks: str) -> list[int]:
    """The cells that track ``tracks``, strongest first: by ``|position_r|`` or by ``selectivity``."""
    key = (lambda e: abs(e["position_r"])) if tracks == "position" else (lambda e: e["selectivity"])
    return sorted((i for i, e in enumerate(cells) if e["tracks"] == tracks), key=lambda i: -key(cells[i]))


def draw_cells(atlas: dict, states: dict[str, torch.Tensor], words: list[str], path: str, per_kind: int = 4) -> None:
    """A PNG of the ``per_kind`` strongest position-tracking and word-selective cells of each state over one
    caption (``states`` from :func:`captioner.decoding.trace_states`; ``words`` its words), labelled by the atlas."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = [
        (kind, i)
        for kind, cells in atlas["cells"].items()
        for tracks in TRACKS
        for i in ranked(cells, tracks)[:per_kind]
    ]
    data = np.stack(
        [states[kind][:, i].numpy() / (np.abs(states[kind][:, i].numpy()).max() or 1.0) for kind, i in rows]
    )  # (rows, steps), each cell scaled to [-1, 1]
    labels = ["<start>", *words]
    fig = Figure(figsize=(0.5 * len(labels) + 4.5, 0.3 * len(rows) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(data, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [f"{kind}[{i}] {atlas['cells'][kind][i]['label']}" for kind, i in rows])
    ax.set_title(
        "The strongest cells of the atlas over one dev caption (each scaled to its largest value)", fontsize=10
    )
    fig.savefig(path, dpi=90)


# ---------------------------------------------------------------- the captions of a dataset


def dev_captions(
    weights: str | None, data: Sequence[str], split: str = "dev", max_captions: int = 0, cache_dir: str | None = None
) -> tuple[Loaded, torch.Tensor, list[list[int]]]:
    """The caption weights ``weights`` (loaded: :class:`captioner.pretrained.Loaded`), and every caption of the
    ``split`` of each dataset of ``data`` as (image features ``(N, feature_dim)``, word ids without markers),
    the features cached as training caches them. Shared with ``benchmarks/gradient_flow.py``."""
    loaded, _ = load_pretrained(weights, with_vqa=False)
    if loaded.tuned:
        raise ValueError(f"{loaded.path}: weights with fine-tuned encoder blocks are not supported here")
    encoder = build_encoder(loaded.encoder, preprocessing=loaded.preprocessing)
    items = []
    for text in data:
        spec = DatasetSpec.parse(text)
        items += load_caption_dataset(spec.name, spec.root, split)
    feats = cached_features(encoder, [it.path for it in items], cache_dir, desc=f"{split} features")
    rows, captions = [], []
    for image, item in enumerate(items):
        for caption in item.captions:
            words = loaded.vocab.encode(caption, add_markers=False)
            if words:
                rows.append(image)
                captions.append(words)
    if max_captions:
        rows, captions = rows[:max_captions], captions[:max_captions]
    return loaded, torch.from_numpy(np.asarray(feats[rows], dtype=np.float32)), captions
