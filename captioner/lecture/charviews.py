"""A text coloured character by character by one cell's activation, as in Karpathy, Johnson & Fei-Fei's figures:
as a PNG (:func:`draw_png`) and as HTML for the app (:func:`colour_html`).

    python -m captioner.lecture.charviews --weights lm-linux-v1 --text kernel/signal.c --signal quote --png q.png
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from ..charlm import CharLM, CharVocab
from .charcells import cell_width, trace

WRAP = 80  # characters per drawn line


@dataclass(frozen=True)
class CellRef:
    """One cell: its state kind (``h`` or ``c``), layer (from 0) and index."""

    kind: str
    layer: int
    cell: int

    @classmethod
    def best_for(cls, atlas: dict, signal: str) -> "CellRef":
        """The atlas's best cell for ``signal``; ValueError naming the signals it has."""
        if signal not in atlas.get("signals", {}):
            raise ValueError(f"no signal {signal!r} in the atlas (signals: {', '.join(atlas.get('signals', {}))})")
        top = atlas["signals"][signal]["best"][0]
        return cls(top["state"], top["layer"], top["cell"])

    def words(self) -> str:
        return f"{self.kind}[layer {self.layer}][{self.cell}]"


def activations(model: CharLM, vocab: CharVocab, text: str, ref: CellRef) -> np.ndarray:
    """The cell's value after each character of ``text`` ``(len(text),)``, read from a zero state."""
    kinds = [kind for kind in sorted(model.cell.state_kinds) for _ in range(model.config.num_layers)]
    layers = [layer for _ in sorted(model.cell.state_kinds) for layer in range(model.config.num_layers)]
    column = next(i for i, (k, layer) in enumerate(zip(kinds, layers)) if (k, layer) == (ref.kind, ref.layer))
    index = column * cell_width(model) + ref.cell
    values = np.zeros(len(text), dtype=np.float32)
    for t, x in trace(model, vocab.encode(text)[None]):
        values[t] = float(x[0, index])
    return values


def _colours(values: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] ``(n, 3)``: blue for negative, red for positive, white at 0, scaled by the largest ``|value|``
    (an ``h`` value lies in [-1, 1]; a ``c`` value may be larger)."""
    scale = max(float(np.abs(values).max()), 1e-6)
    v = np.clip(values / scale, -1, 1)[:, None]  # (n, 1)
    red, blue, white = np.array([0.84, 0.19, 0.15]), np.array([0.19, 0.39, 0.84]), np.ones(3)
    return np.where(v > 0, white + v * (red - white), white - v * (blue - white))


def colour_html(text: str, values: np.ndarray) -> str:
    """``text`` as HTML spans, each character's background its cell's value (wraps at the page's width)."""
    spans = []
    for ch, rgb in zip(text, _colours(values)):
        shown = "<br>" if ch == "\n" else "&nbsp;" if ch == " " else "&nbsp;" * 4 if ch == "\t" else html.escape(ch)
        colour = "#" + "".join(f"{round(255 * c):02x}" for c in rgb)
        spans.append(f'<span style="background:{colour}">{shown}</span>' + ("<wbr>" if ch == " " else ""))
    return (
        '<div style="font-family:monospace;font-size:13px;line-height:1.5;white-space:normal;'
        'word-break:break-all;color:#111">' + "".join(spans) + "</div>"
    )


def draw_png(path: str, text: str, values: np.ndarray, title: str) -> None:
    """The coloured text as a PNG (monospaced, wrapped at :data:`WRAP` columns, tabs as 4 spaces)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows, row, col = [], [], 0
    for ch, rgb in zip(text, _colours(values)):
        for piece in "    " if ch == "\t" else ch:
            if piece == "\n" or col >= WRAP:
                rows.append(row)
                row, col = [], 0
            if piece != "\n":
                row.append((piece, rgb))
                col += 1
    rows.append(row)
    figure = Figure(figsize=(WRAP * 0.085 + 0.4, len(rows) * 0.19 + 0.6))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1, WRAP + 1)
    ax.set_ylim(len(rows) + 1.5, -1.5)
    ax.axis("off")
    ax.text(0, -0.7, title, fontsize=9, family="monospace")
    for y, cells in enumerate(rows):
        for x, (ch, rgb) in enumerate(cells):
            ax.add_patch(matplotlib.patches.Rectangle((x, y), 1, 1, color=tuple(rgb), linewidth=0))
            ax.text(x + 0.5, y + 0.78, ch, fontsize=8, family="monospace", ha="center")
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from ..data.text import read_documents
    from ..io import one_line
    from ..pretrained import load_lm

    p = argparse.ArgumentParser(
        prog="python -m captioner.lecture.charviews",
        description=("Draw a text coloured by the atlas's best cell for a signal (or a cell you name)."),
    )
    p.add_argument("--weights", default=None, help="character-model weights (default: the default entry)")
    p.add_argument("--text", required=True, help="a UTF-8 text file")
    p.add_argument("--start", type=int, default=0, help="first character drawn (default: 0)")
    p.add_argument("--chars", type=int, default=1200, help="characters drawn (default: 1200)")
    p.add_argument("--signal", default="quote", help="draw the atlas's best cell for this signal (default: quote)")
    p.add_argument("--png", required=True, help="write the figure here")
    args = p.parse_args(argv)
    try:
        lm = load_lm(args.weights)
        text = "".join(d.text for d in read_documents([args.text]))[args.start : args.start + args.chars]
        ref = CellRef.best_for(lm.atlas, args.signal)
        r = next(c["r"] for c in lm.atlas["signals"][args.signal]["best"])
        draw_png(
            args.png,
            text,
            activations(lm.model, lm.vocab, text, ref),
            f"{ref.words()}: best {args.signal} cell (r {r:+.2f}); red high, blue low",
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"charviews: error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
