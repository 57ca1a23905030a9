"""The figures of the Look inside tab: the cells over a caption's words, one cell word by word, the gradient flow.

The values they draw come from :mod:`captioner.lecture.inside`; these functions only draw them (matplotlib
figures, rendered to PNG by Gradio).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..lecture.atlas import TRACKS_SHOWN

# Which cells Look inside shows: by what the weights' cell atlas says they track, or (weights without one) those
# that vary most over the caption.
SHOWS = {**TRACKS_SHOWN, "varying": "cells that vary most over this caption"}

Scored = list[tuple[str, float | None]]  # HighlightedText: (text, score or None for no colour)


def states_figure(values: np.ndarray, labels: list[str], cells: np.ndarray, kind: str, show: str,
                  names: list[str]) -> Figure:
    """Heatmap of the chosen cells (rows, named by ``names``) over the words (columns), red positive, blue negative."""
    data = values[:, cells].T
    limit = float(np.abs(data).max()) or 1.0
    fig = Figure(figsize=(max(6.0, 0.45 * len(labels) + 2.0), 0.26 * len(cells) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(cells)), names)
    ax.set_title(f"{len(cells)} {SHOWS[show].replace('cells', f'{kind}_t cells', 1)}" +
                 (" (found over the dev captions)" if show != "varying" else ""), fontsize=10)
    fig.colorbar(image, ax=ax, label=f"{kind}_t value", shrink=0.9)
    return fig


def cell_view(values: np.ndarray, labels: list[str], cell: int, kind: str) -> tuple[Figure, Scored]:
    """One cell's value after each word: a line plot, and the words coloured by it (Karpathy's view)."""
    series = values[:, cell]
    fig = Figure(figsize=(max(6.0, 0.45 * len(labels) + 2.0), 2.6), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.75", linewidth=0.8)
    ax.plot(series, marker="o", color="tab:red")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_ylabel(f"{kind}[{cell}]")
    ax.set_title(f"Cell {cell} of {kind}_t, word by word", fontsize=10)
    scale = float(np.abs(series).max()) or 1.0
    return fig, [(word, round(float(v) / scale, 3)) for word, v in zip(labels, series)]


def gradient_figure(norms: dict[str, np.ndarray], labels: list[str]) -> Figure:
    """‖∂ log p(w_T)/∂h_t‖ by step, one panel per decoder side by side, each relative to its last step."""
    fig = Figure(figsize=(max(6.0, 0.6 * len(labels) * len(norms) + 2.0), 2.8), layout="constrained")
    axes = fig.subplots(1, len(norms), sharey=True, squeeze=False)[0]
    for ax, (name, values) in zip(axes, norms.items()):
        ax.bar(range(len(values)), values / (values[-1] or 1.0), color="tab:purple")
        ax.set_yscale("log")
        ax.set_xticks(range(len(values)), labels[: len(values)], rotation=45, ha="right")
        ax.set_title(name, fontsize=10)
    axes[0].set_ylabel("relative to the last step")
    fig.suptitle(f"How far back does the gradient of the last word, {labels[-1]!r}, reach? "
                 "‖∂ log p(w_T)/∂h_t‖ after each word", fontsize=10)
    return fig
