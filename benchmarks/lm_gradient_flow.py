"""Gradient flow over hundreds of characters, in a character LSTM and a vanilla RNN of the same size.

    python benchmarks/lm_gradient_flow.py --text FILE [--lstm WEIGHTS] [--rnn WEIGHTS] [--ssm WEIGHTS] [--untrained]
                                          [--distance 200] [--windows 64] [--png docs/lm_gradient_flow.png]

For ``--windows`` windows of ``--distance + 1`` characters spread over the text (each after a 100-character
warm-up), ‖∂ log p(x_T) / ∂s_t‖ by distance T - t (:mod:`captioner.lecture.charflow`): with respect to ``h_t``
(every layer) for both cells, and to the LSTM's whole state ``(h_t, c_t)`` (with ``--ssm``, also the SSM's whole
state: its ``ssm`` and ``conv`` parts). Prints each curve relative to distance 1 at a few distances, the σ_max of
each layer's ``W_hh``, and the exploding side: one chunk's gradient norm with the RNN's ``W_hh`` rescaled to
σ_max 0.5-3, and what clipping at 5 lets through. The last lines are the issue's figure: at distance 100, the
LSTM's whole-state ratio over the RNN's ``h_t`` ratio, three ways (the ratio of the mean norms over the windows,
and the median and the geometric mean of each window's own ratio).

A model given as weights is used as trained; without ``--rnn`` (or with ``--untrained``), a freshly initialised
model of the LSTM's shape stands in, and the output says so. Needs a text: any UTF-8 file works
(``../shared/data/text/tinyshakespeare/input.txt`` in the docs).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from captioner.charlm import CharLM, CharLMConfig, CharVocab
from captioner.data.text import read_documents
from captioner.lecture.charflow import clipping_effect, largest_singular_values, window_gradients
from captioner.pretrained import load_lm

SHOWN = (1, 2, 5, 10, 25, 50, 100, 150, 200)
WARMUP = 100


def models(args) -> tuple[dict[str, tuple[CharLM, str]], CharVocab]:
    """The two models by cell, each with words for what it is."""
    lstm = load_lm(args.lstm)
    found = {"lstm": (lstm.model, f"trained ({args.lstm})")}
    if args.rnn and not args.untrained:
        found["rnn"] = (load_lm(args.rnn).model, f"trained ({args.rnn})")
    else:
        torch.manual_seed(0)
        found["rnn"] = (CharLM(CharLMConfig(**{**vars(lstm.model.config), "cell": "rnn"})), "untrained")
    if args.ssm:
        found["ssm"] = (load_lm(args.ssm).model, f"trained ({args.ssm})")
    if args.untrained:
        torch.manual_seed(0)
        found["lstm"] = (CharLM(lstm.model.config), "untrained")
    for model, _ in found.values():
        model.eval().double()  # float64: at distance 200 a vanishing gradient is below float32's range
    return found, lstm.vocab


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", required=True, help="a UTF-8 text file or folder")
    p.add_argument("--lstm", default="lm-shakespeare-v1", help="LSTM weights (default: lm-shakespeare-v1)")
    p.add_argument("--rnn", default=None, help="RNN weights (default: none, an untrained RNN of the same shape)")
    p.add_argument(
        "--ssm",
        default=None,
        help="also an SSM's weights, its whole state (default: none; float64 autograd over that state takes about "
        "0.12 GB of memory per window: 7.4 GB at 64 windows)",
    )
    p.add_argument("--untrained", action="store_true", help="both models freshly initialised (default: off)")
    p.add_argument("--distance", type=int, default=200, help="longest distance (default: 200)")
    p.add_argument("--windows", type=int, default=64, help="windows averaged (default: 64)")
    p.add_argument("--png", help="write the plot here (default: none)")
    args = p.parse_args(argv)
    found, vocab = models(args)
    text = "".join(d.text for d in read_documents([args.text]))
    ids = vocab.encode(text)
    span = WARMUP + args.distance + 1
    starts = np.linspace(0, len(ids) - span - 1, args.windows).astype(int)
    batch = torch.stack([ids[s : s + span] for s in starts])  # (windows, span)
    warm, windows = batch[:, :WARMUP], batch[:, WARMUP:]
    curves, per_window = {}, {}
    for cell, (model, what) in found.items():
        sigmas = "none (no W_hh)" if cell == "ssm" else ", ".join(f"{v:.2f}" for v in largest_singular_values(model))
        print(f"{cell}: {what}; sigma_max(W_hh) by layer: {sigmas}")
        parts = {"lstm": [("h",), ("h", "c")], "rnn": [("h",)], "ssm": [("ssm", "conv")]}[cell]
        for kinds in parts:
            norms = window_gradients(model, windows, warm, kinds).numpy()  # (windows, distance)
            name = f"{cell} {'+'.join(kinds)}"
            curves[name] = norms.mean(0) / norms.mean(0)[0]  # the ratio of the means: the figure shown first
            per_window[name] = norms / norms[:, :1]  # each window's own ratio to its distance 1
    print("distance      " + "".join(f"{d:>10}" for d in SHOWN if d <= args.distance))
    for name, curve in curves.items():
        print(f"{name:<14}" + "".join(f"{curve[d - 1]:>10.3g}" for d in SHOWN if d <= args.distance))
    rnn = found["rnn"][0]
    print(
        f"exploding side (RNN, 8 chunks of {args.distance + 1} characters, W_hh rescaled): sigma_max -> gradient "
        "norm -> after clipping at 5"
    )
    for row in clipping_effect(rnn, windows[:8], [0.5, 1.0, 1.5, 2.0, 3.0], 5.0):
        print(f"  {row['sigma_max']:.1f} -> {row['grad_norm']:.3g} -> {row['clipped_to']:.3g}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 3.8))
        ax = fig.add_subplot()
        for name, curve in curves.items():
            ax.semilogy(np.arange(1, len(curve) + 1), curve, label=name)
        ax.set_xlabel("distance (characters)")
        ax.set_ylabel("‖∂ log p(x_T)/∂s_t‖, relative to distance 1")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
    if args.distance >= 100:
        report_distance(curves, per_window, 100)
    return 0


def report_distance(curves: dict, per_window: dict, d: int) -> None:
    """The issue's figure at distance ``d``, three ways: the ratio of the mean norms over the windows (a few
    windows with large gradients dominate it), and the median and geometric mean of each window's own ratio."""
    ways = {
        "ratio of means": {k: float(v[d - 1]) for k, v in curves.items()},
        "median of ratios": {k: float(np.median(v[:, d - 1])) for k, v in per_window.items()},
        "geometric mean of ratios": {k: float(np.exp(np.log(v[:, d - 1]).mean())) for k, v in per_window.items()},
    }
    for way, by in ways.items():
        lstm_whole, rnn_h = by["lstm h+c"], by["rnn h"]
        print(
            f"distance {d} / distance 1 ({way}): lstm whole state {lstm_whole:.3g}, lstm h {by['lstm h']:.3g}, "
            f"rnn h {rnn_h:.3g}; lstm whole / rnn = {lstm_whole / max(rnn_h, 1e-300):.3g}x"
            + (f"; ssm whole state {by['ssm ssm+conv']:.3g}" if "ssm ssm+conv" in by else "")
        )


if __name__ == "__main__":
    sys.exit(main())
