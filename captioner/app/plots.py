"""The figures of the Look inside tab: the cells over a caption's words, one cell word by word, the gradient flow;
and the Ask tab's photo with where a concept was seen highlighted.

The values they draw come from :mod:`captioner.lecture.inside` and :mod:`captioner.look`; these functions only draw
them (matplotlib figures, rendered to PNG by Gradio; the highlight with PIL and numpy).
"""

from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ..lecture.atlas import TRACKS_SHOWN

# Which cells Look inside shows: by what the weights' cell atlas says they track, or (weights without one) those
# that vary most over the caption.
SHOWS = {**TRACKS_SHOWN, "varying": "cells that vary most over this caption"}

Scored = list[tuple[str, float | None]]  # HighlightedText: (text, score or None for no colour)

# Every figure is WIDTH inches wide with FONT-point text, whatever the caption's length: the page shows a plot at
# its own size (100 px an inch) or shrunk to its column, 324 px on a 390 px phone, where FONT / WIDTH * 324 / 72
# puts the smallest text at 10.8 px. (Wider figures for longer captions had 7 px text at 1280 px.)
WIDTH, FONT = 5.0, 12
TITLE_CHARS = 48  # a title's line at FONT points in WIDTH inches (titles wrap, never cut off)
LABEL_CHARS = 24  # a heatmap row's name, at most (what the cell tracks, shortened)
# The highlight: the photo shown at most this many pixels a side, darkened to this much of its brightness where the
# concept's map is lowest.
HIGHLIGHT_SIDE, DARKEST = 1024, 0.25


def _figure(height: float) -> Figure:
    return Figure(figsize=(WIDTH, height), layout="constrained")


def _words_axis(ax, labels: list[str], upright: bool = False) -> None:
    """The caption's words under a plot: slanted while they fit, upright under narrow columns (a long caption,
    the heatmap's)."""
    if upright or len(labels) > 10:
        ax.set_xticks(range(len(labels)), labels, rotation=90)
    else:
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.tick_params(labelsize=FONT)


def _short(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"


def states_figure(
    values: np.ndarray, labels: list[str], cells: np.ndarray, kind: str, show: str, names: list[str]
) -> Figure:
    """Heatmap of the chosen cells (rows, named by ``names``) over the words (columns), red positive, blue negative."""
    data = values[:, cells].T
    limit = float(np.abs(data).max()) or 1.0
    fig = _figure(0.26 * len(cells) + 2.6)
    ax = fig.add_subplot()
    image = ax.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    _words_axis(ax, labels, upright=True)
    ax.set_yticks(range(len(cells)), [_short(name) for name in names])
    title = f"{len(cells)} {SHOWS[show].replace('cells', f'{kind}_t cells', 1)}" + (
        " (found over the dev captions)" if show != "varying" else ""
    )
    fig.suptitle(textwrap.fill(title, TITLE_CHARS), fontsize=FONT)  # over the figure: the row names' side too
    bar = fig.colorbar(image, ax=ax, shrink=0.9, aspect=30, pad=0.02)
    bar.set_label(f"{kind}_t value", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT)
    return fig


def cell_view(values: np.ndarray, labels: list[str], cell: int, kind: str) -> tuple[Figure, Scored]:
    """One cell's value after each word: a line plot, and the words coloured by it (Karpathy's view)."""
    series = values[:, cell]
    fig = _figure(3.2)
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.75", linewidth=0.8)
    ax.plot(series, marker="o", color="tab:red")
    _words_axis(ax, labels)
    ax.set_ylabel(f"{kind}[{cell}]", fontsize=FONT)
    ax.set_title(f"Cell {cell} of {kind}_t, word by word", fontsize=FONT)
    scale = float(np.abs(series).max()) or 1.0
    return fig, [(word, round(float(v) / scale, 3)) for word, v in zip(labels, series)]


def gradient_figure(norms: dict[str, np.ndarray], labels: list[str]) -> Figure:
    """‖∂ log p(w_T)/∂h_t‖ by step, one panel per decoder, one above the other (the words under the last), each
    relative to its last step."""
    fig = _figure(1.7 * len(norms) + 2.4)
    axes = fig.subplots(len(norms), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, norms.items()):
        ax.bar(range(len(values)), values / (values[-1] or 1.0), color="tab:purple")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=FONT)
        ax.tick_params(labelsize=FONT)
    _words_axis(axes[-1], labels[: len(next(iter(norms.values())))])
    fig.supylabel("relative to the last step", fontsize=FONT)
    fig.suptitle(
        textwrap.fill(
            f"How far back does the gradient of the last word, {labels[-1]!r}, reach? "
            "‖∂ log p(w_T)/∂h_t‖ after each word",
            TITLE_CHARS,
        ),
        fontsize=FONT,
    )
    return fig


def highlight(photo: Image.Image, where: Sequence[float]) -> Image.Image:
    """``photo`` darkened where ``where`` (a map over the encoder's square grid, row-major) is low. The encoder saw
    the whole photo squashed to a square, no crop, so the grid is stretched over the whole photo."""
    side = round(len(where) ** 0.5)
    grid = np.asarray(where, dtype=np.float32).reshape(side, side)
    shown = photo.convert("RGB")
    shown.thumbnail((HIGHLIGHT_SIDE, HIGHLIGHT_SIDE))
    level = np.asarray(Image.fromarray(grid / (grid.max() or 1.0)).resize(shown.size, Image.BILINEAR))
    light = DARKEST + (1 - DARKEST) * np.clip(level, 0, 1)[..., None]  # 1 at the cell where it fires most
    return Image.fromarray((np.asarray(shown, dtype=np.float32) * light).round().astype(np.uint8))
