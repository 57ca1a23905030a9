"""How far back the last word's gradient reaches, in the shipped LSTM and the shipped vanilla RNN.

    python benchmarks/gradient_flow.py [--lstm caption-flickr8k-coco-v3] [--rnn caption-rnn-flickr8k-coco-v1]
                                       [--captions 200] [--distance 8] [--untrained]
                                       [--png FILE] [--data FORMAT:FOLDER ...]

Needs the Flickr8k and COCO dev captions and images (``--data``; by default ``../shared/data/flickr8k`` and
``../shared/data/coco`` beside a checkout), and takes a few minutes on a laptop CPU (the dev features are encoded
first). Writes no file unless ``--png`` is given.

For each of ``--captions`` dev captions of at least ``--distance`` words (spread evenly over Flickr8k's and
COCO's dev captions), teacher-forced through each decoder: ‖∂ log p(w_T) / ∂h_t‖ for every earlier step t
(:mod:`captioner.lecture.gradients`), by distance T - t from the last word (distance 1: the state that predicts it).
Prints each decoder's mean norm by distance, and relative to distance 1, and for the LSTM also the norm with
respect to its whole state ``(h_t, c_t)``, the cell state being the path the lecture says the gradient takes;
writes the plot to ``--png`` when given. The last line is the figure of issue 29: each decoder's mean norm at
``--distance`` over its mean norm at distance 1, with respect to ``h_t``; the line before it gives each ratio's 95%
interval over the captions (a bootstrap: how much the figure depends on which captions were drawn).
``--untrained`` measures freshly initialised decoders of the same shapes instead: the lecture's argument before any
training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
import torch

from captioner.decoder import CaptionDecoder
from captioner.decoding import trace_batch
from captioner.lecture.atlas import dev_captions
from captioner.lecture.gradients import gradient_norms
from captioner.settings import number

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)

DATA = ["flickr8k:../shared/data/flickr8k", "coco:../shared/data/coco"]  # the shared copies beside a checkout


def caption_norms(
    weights: str, count: int, distance: int, untrained: bool = False, data: list[str] = DATA
) -> tuple[dict[tuple[str, ...], np.ndarray], float]:
    """The gradient norm by distance 1..``distance`` ``(count, distance)`` for ``count`` dev captions of at least
    ``distance`` words, with respect to ``h_t`` and, for an LSTM, to ``(h_t, c_t)`` (keyed by the state parts), and
    the share of their ``h_t`` values that are saturated (``|h| > 0.99``, where ``tanh' < 0.02``). ``untrained``:
    a decoder of the weights' shape with PyTorch's initial weights (seed 0) instead of the trained one."""
    loaded, features, captions = dev_captions(weights, data)
    if untrained:
        torch.manual_seed(0)
        loaded.model = CaptionDecoder(loaded.model.config)
    long = [i for i, c in enumerate(captions) if len(c) >= distance]
    if not long:
        raise ValueError(f"--distance {distance}: no dev caption is that long")
    picked = [long[int(j)] for j in np.linspace(0, len(long) - 1, count)]
    parts = {("h",), loaded.model.config.state_kinds[::-1]}  # ("h",), and ("h", "c") for an LSTM
    norms: dict[tuple[str, ...], list[np.ndarray]] = {kinds: [] for kinds in parts}
    for i, kinds in ((i, kinds) for i in picked for kinds in parts):
        by_step = gradient_norms(loaded.model, features[i], captions[i], kinds).numpy()  # (T,): row t at distance T - t
        norms[kinds].append(by_step[::-1][:distance])  # by distance 1, 2, ...
    states = trace_batch(loaded.model, features[picked], [captions[i] for i in picked])
    saturated = float(np.mean(np.concatenate([np.abs(s["h"].numpy()).ravel() > 0.99 for s in states])))
    return {kinds: np.stack(rows) for kinds, rows in norms.items()}, saturated


def ratio_interval(rows: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 95% bootstrap interval of the last distance's mean over the first's, captions ``rows`` ``(N, D)``
    drawn again with replacement."""
    draws = np.random.default_rng(seed).integers(0, len(rows), (resamples, len(rows)))  # (resamples, N)
    ratios = rows[draws, -1].mean(axis=1) / rows[draws, 0].mean(axis=1)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def plot(means: dict[str, np.ndarray], whole: np.ndarray, args: argparse.Namespace) -> None:
    """Each decoder's gradient norm by distance, relative to distance 1, as a PNG at ``args.png``."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for cell, values in means.items():
        ax.semilogy(range(1, args.distance + 1), values / values[0], marker="o", label=f"{cell.upper()}, h_t")
    ax.semilogy(range(1, args.distance + 1), whole / whole[0], marker="s", linestyle="--", label="LSTM, (h_t, c_t)")
    ax.set_xlabel("distance T - t from the last word (steps back)")
    ax.set_ylabel("‖∂ log p(w_T)/∂h_t‖, relative to distance 1")
    ax.set_title(
        f"How far back the last word's gradient reaches ({args.captions} dev captions"
        + (", untrained)" if args.untrained else ")"),
        fontsize=10,
    )
    ax.legend()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100)
    print(f"wrote {args.png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--lstm",
        default="caption-flickr8k-coco-v3",
        help="LSTM caption weights, entry or folder (default: caption-flickr8k-coco-v3)",
    )
    parser.add_argument(
        "--rnn",
        default="caption-rnn-flickr8k-coco-v1",
        help="RNN caption weights, entry or folder (default: caption-rnn-flickr8k-coco-v1)",
    )
    parser.add_argument(
        "--captions", type=number(int, low=1, high=100_000), default=200, help="dev captions averaged (default: 200)"
    )
    parser.add_argument(
        "--distance", type=number(int, low=2, high=50), default=8, help="the distance of the ratio (default: 8)"
    )
    parser.add_argument(
        "--untrained",
        action="store_true",
        help="measure decoders of the same shapes with their initial weights (default: the trained)",
    )
    parser.add_argument("--png", help="write the plot here, e.g. docs/gradient_flow.png (default: no plot)")
    parser.add_argument(
        "--data",
        action="append",
        metavar="FORMAT:FOLDER",
        help=f"a caption dataset whose dev split is read, repeatable (default: {' and '.join(DATA)})",
    )
    args = parser.parse_args()
    try:
        measured = {
            cell: caption_norms(weights, args.captions, args.distance, args.untrained, args.data or DATA)
            for cell, weights in (("lstm", args.lstm), ("rnn", args.rnn))
        }
    except (OSError, ValueError) as e:
        parser.exit(2, f"gradient_flow.py: error: {e}\n")
    rows = {cell: m[("h",)] for cell, (m, _) in measured.items()}  # each (captions, distance)
    means = {cell: r.mean(axis=0) for cell, r in rows.items()}
    whole = measured["lstm"][0][("h", "c")].mean(axis=0)  # the LSTM's (h_t, c_t)
    print(
        f"mean ‖∂ log p(w_T) / ∂h_t‖ over {args.captions} dev captions of at least {args.distance} words"
        + (", decoders with their initial weights" if args.untrained else "")
    )
    print("| distance T - t | LSTM | LSTM / distance 1 | RNN | RNN / distance 1 | LSTM (h_t, c_t) / distance 1 |")
    print("|---|---|---|---|---|---|")
    for d in range(args.distance):
        print(
            f"| {d + 1} | {means['lstm'][d]:.4g} | {means['lstm'][d] / means['lstm'][0]:.3g} | "
            f"{means['rnn'][d]:.4g} | {means['rnn'][d] / means['rnn'][0]:.3g} | {whole[d] / whole[0]:.3g} |"
        )
    if args.png:
        plot(means, whole, args)
    print(
        "saturated h_t values (|h| > 0.99): "
        + ", ".join(f"{cell} {100 * saturated:.1f}%" for cell, (_, saturated) in measured.items())
    )
    ratio = {cell: values[args.distance - 1] / values[0] for cell, values in means.items()}
    print(f"with respect to the LSTM's whole state (h_t, c_t): lstm {whole[args.distance - 1] / whole[0]:.3g}")
    print(
        "95% intervals over the captions: "
        + ", ".join(
            f"{cell} {lo:.3g} to {hi:.3g}" for cell, (lo, hi) in ((cell, ratio_interval(r)) for cell, r in rows.items())
        )
    )
    print(f"gradient flow at distance {args.distance} / distance 1: lstm {ratio['lstm']:.3g}, rnn {ratio['rnn']:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
