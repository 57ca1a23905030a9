"""The three cells side by side at equal parameter count: the vanilla RNN, the LSTM and the selective SSM.

    python benchmarks/cells.py [--hidden 256] [--layers 1] [--batch 64] [--lengths 64 256 1024] [--rounds 3]
                               [--threads 1] [--text ../shared/data/text/tinyshakespeare/input.txt --minutes 10]
                               [--png FILE] [--json FILE]

Each cell reads character embeddings (``--hidden`` wide) and predicts the next character over a 65-character
vocabulary, as a character language model does. The LSTM is ``--hidden`` wide; the RNN and the SSM are as wide as
gives them the LSTM's parameter count (:func:`captioner.cells.matched_hidden`). On this CPU, in one run:

- **training characters per second** (forward and backward, ``--batch`` sequences) at each of ``--lengths``,
  measured in ``--rounds`` rounds that alternate the cells (so a change in the machine's load hits all three),
  reported as medians;
- **sampling characters per second**: one character at a time from the cell's O(1) step, batch 1;
- **memory**: parameters; the numbers in one sequence's state (what sampling carries, whatever the length: the
  state after 10,000 steps is checked to be as big as after 100); the activations a training batch keeps for the
  backward pass at length 256 (bytes of the tensors autograd saves);
- **gradient flow**: ‖∂ loss_T / ∂ s_t‖ over the whole state ``s_t`` (RNN: h; LSTM: h and c; SSM: its state and
  its convolution's inputs) at distances 1 to 200 from the predicted character, relative to distance 1, on the
  freshly initialised models, and on the trained ones with ``--text``;
- with ``--text`` and ``--minutes``: each of ``--train-cells`` is trained for the same wall time on the first 90%
  of the text (random ``--bptt``-character chunks, batch 32, Adam, gradient clipping), in slices that alternate
  the cells, and its validation loss (nats per character, on the last 10%) is printed every ``--every``
  minutes. For a trained SSM it also prints its selectivity: the step size Δ by character (and with
  ``--selectivity WEIGHTS``, that of a shipped SSM character model such as ``lm-shakespeare-ssm-v1``).

``--png`` writes the plot of training time per batch against sequence length (the lecture's "compute scales
linearly"); nothing is written without it. Needs no data unless ``--text`` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from captioner.cells import build_cell, matched_hidden, parameter_count
from captioner.settings import number

KINDS = ("rnn", "lstm", "ssm")
VOCAB = 65  # tiny-shakespeare's characters
DISTANCES = (1, 2, 5, 10, 20, 50, 100, 200)


class CharModel(nn.Module):
    """Embedding, a cell, and the output layer: the character language model's shape."""

    def __init__(self, kind: str, embed: int, hidden: int, layers: int, vocab: int = VOCAB):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.cell = build_cell(kind, embed, hidden, layers)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple]:
        """Characters ``(N, T)`` to next-character logits ``(N, T, vocab)`` and the final state."""
        h, state = self.cell.sequence(self.embed(x), state)  # (N, T, hidden)
        return self.out(h), state


def build_models(args: argparse.Namespace) -> dict[str, CharModel]:
    """One model per cell kind, the RNN and the SSM widened to the LSTM's parameter count."""
    models = {}
    for kind in KINDS:
        hidden = args.hidden if kind == "lstm" else matched_hidden(kind, "lstm", args.hidden, args.hidden, args.layers)
        torch.manual_seed(0)
        models[kind] = CharModel(kind, args.hidden, hidden, args.layers)
    return models


# ---------------------------------------------------------------- speed and memory


def train_time(model: CharModel, batch: int, length: int) -> float:
    """Seconds for one forward and backward pass over ``batch`` random sequences of ``length`` characters."""
    x = torch.randint(VOCAB, (batch, length + 1))
    start = time.perf_counter()
    logits, _ = model(x[:, :-1])  # (N, T, vocab)
    nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def training_speed(models: dict[str, CharModel], args: argparse.Namespace) -> dict[str, dict[int, float]]:
    """Median training characters per second by kind and length, over rounds that alternate the kinds."""
    times: dict[str, dict[int, list[float]]] = {k: {n: [] for n in args.lengths} for k in models}
    for model in models.values():  # warm up (first calls allocate)
        train_time(model, 2, 16)
    for r in range(args.rounds):
        for length in args.lengths:
            for kind, model in models.items():
                times[kind][length].append(train_time(model, args.batch, length))
        print(
            f"  round {r + 1}/{args.rounds}: "
            + ", ".join(f"{k} {args.batch * n / t[n][-1]:,.0f}" for k, t in times.items() for n in args.lengths[-1:])
            + f" chars/s at length {args.lengths[-1]}",
            flush=True,
        )
    return {k: {n: args.batch * n / statistics.median(t) for n, t in by.items()} for k, by in times.items()}


@torch.inference_mode()
def sample(model: CharModel, length: int, seed: int = 0) -> tuple[list[int], tuple]:
    """``length`` characters drawn one at a time with the cell's O(1) step; the final state."""
    generator = torch.Generator().manual_seed(seed)
    state, x, out = model.cell.zero_state(1), torch.zeros(1, dtype=torch.long), []
    for _ in range(length):
        h, state = model.cell.step(model.embed(x), state)  # (1, hidden)
        x = torch.multinomial(model.out(h).softmax(-1), 1, generator=generator)[:, 0]  # (1,)
        out.append(int(x))
    return out, state


def sampling_speed(models: dict[str, CharModel], args: argparse.Namespace) -> dict[str, float]:
    """Median sampling characters per second by kind, alternating the kinds."""
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for kind, model in models.items():
            start = time.perf_counter()
            sample(model, args.sample_chars)
            times[kind].append(time.perf_counter() - start)
    return {k: args.sample_chars / statistics.median(t) for k, t in times.items()}


def saved_bytes(model: CharModel, batch: int, length: int) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training batch (each storage once)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randint(VOCAB, (batch, length))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)[0].sum()
    return sum(storages.values())


def memory(models: dict[str, CharModel], args: argparse.Namespace) -> dict[str, dict[str, int]]:
    """Parameters, state numbers per sequence (after 100 and 10,000 sampled steps), training activations."""
    out = {}
    for kind, model in models.items():
        sizes = [sum(s[:, 0].numel() for s in sample(model, n)[1]) for n in (100, args.long_sample)]
        out[kind] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "cell_parameters": parameter_count(kind, args.hidden, model.cell.hidden_size, args.layers),
            "hidden": model.cell.hidden_size,
            "state_numbers_after_100": sizes[0],
            f"state_numbers_after_{args.long_sample}": sizes[1],
            "training_activation_bytes_at_256": saved_bytes(model, args.batch, 256),
        }
    return out


# ---------------------------------------------------------------- gradient flow


def gradient_flow(model: CharModel, text: torch.Tensor) -> dict[int, float]:
    """Mean ‖∂ loss_T / ∂ s_{T-d}‖ over the rows of ``text`` ``(N, T + 1)``, relative to d = 1, for each of
    :data:`DISTANCES`: ``s_{T-d}`` is the whole state the step reading character ``T - d + 1`` starts from, and
    ``loss_T`` the loss of predicting character ``T + 1`` from the step that reads character ``T``."""
    model.eval()
    n, t = text.shape[0], text.shape[1] - 1
    state = tuple(s.clone().requires_grad_() for s in model.cell.zero_state(n))  # (the LSTM shares one zero tensor)
    entering = []
    for i in range(t):
        entering.append(state)
        h, state = model.cell.step(model.embed(text[:, i]), state)  # (N, hidden)
    loss = nn.functional.cross_entropy(model.out(h), text[:, t], reduction="sum")
    wanted = [entering[t - d] for d in DISTANCES if d <= t]
    grads = torch.autograd.grad(loss, [s for parts in wanted for s in parts], allow_unused=True)
    k, norms = len(wanted[0]), []
    for i in range(len(wanted)):
        parts = [g if g is not None else torch.zeros(1) for g in grads[i * k : (i + 1) * k]]
        norms.append(sum(g.square().flatten(2).sum(-1).sum(0) for g in parts).sqrt().mean().item())  # per row
    model.train()
    return {d: v / norms[0] for d, v in zip(DISTANCES, norms)}


# ---------------------------------------------------------------- equal wall time on real text


def read_text(path: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The text as character ids, split into the first 90% (training) and the last 10% (validation)."""
    text = Path(path).read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text])
    cut = int(0.9 * len(ids))
    return ids[:cut], ids[cut:], chars


def chunks(ids: torch.Tensor, n: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random chunks of ``length + 1`` characters ``(n, length + 1)``."""
    starts = torch.randint(len(ids) - length - 1, (n,), generator=generator)
    return torch.stack([ids[s : s + length + 1] for s in starts.tolist()])


@torch.no_grad()
def val_loss(model: CharModel, val: torch.Tensor, args: argparse.Namespace) -> float:
    """Mean nats per character over fixed validation chunks (each read from a zero state)."""
    model.eval()
    x = chunks(val, args.val_chunks, args.val_length, torch.Generator().manual_seed(123))
    logits, _ = model(x[:, :-1])
    model.train()
    return nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).item()


def train_equal_time(
    models: dict[str, CharModel], train: torch.Tensor, val: torch.Tensor, args: argparse.Namespace
) -> dict[str, list[tuple[float, int, float]]]:
    """Train each model for ``args.minutes`` of wall time, in slices of ``args.slice`` seconds that alternate the
    models; ``(minutes, characters, val loss)`` every ``args.every`` minutes, by kind."""
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=args.lr) for k, m in models.items()}
    spent = {k: 0.0 for k in models}
    seen = {k: 0 for k in models}
    curves: dict[str, list[tuple[float, int, float]]] = {k: [] for k in models}
    generator = torch.Generator().manual_seed(0)
    budget = 60 * args.minutes
    while min(spent.values()) < budget:
        for kind, model in models.items():
            stop = min(spent[kind] + args.slice, budget)
            while spent[kind] < stop:
                start = time.perf_counter()
                x = chunks(train, args.train_batch, args.bptt, generator)
                logits, _ = model(x[:, :-1])  # (N, T, vocab)
                loss = nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
                optimizers[kind].zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizers[kind].step()
                spent[kind] += time.perf_counter() - start
                seen[kind] += x[:, 1:].numel()
                if spent[kind] >= 60 * args.every * (len(curves[kind]) + 1) or spent[kind] >= budget:
                    curves[kind].append((spent[kind] / 60, seen[kind], val_loss(model, val, args)))
                    print(
                        f"  {kind}: {spent[kind] / 60:.1f} min, {seen[kind]:,} chars, train {loss.item():.3f}, "
                        f"val {curves[kind][-1][2]:.3f}",
                        flush=True,
                    )
    return curves


BARS = " ▁▂▃▄▅▆▇█"


@torch.no_grad()
def selectivity(model: CharModel, val: torch.Tensor, chars: list[str]) -> dict:
    """The trained SSM's step size Δ (first layer, mean over heads) on a validation passage: by character, and
    drawn under a line of it (a tall bar: the cell lets the character in; a short one: it holds its state)."""
    model.eval()
    x = val[:2000][None]  # (1, T)
    _, _, dt = model.cell.trace(model.embed(x))  # (layers, 1, T, heads)
    delta = dt[0, 0].mean(-1)  # (T,)
    by_char: dict[str, list[float]] = {}
    for c, d in zip(x[0].tolist(), delta.tolist()):
        by_char.setdefault(chars[c], []).append(d)
    mean = {repr(c)[1:-1]: sum(v) / len(v) for c, v in by_char.items() if len(v) >= 20}
    text = "".join(chars[c] for c in x[0].tolist())
    line = next(i for i in range(200, 1900) if text[i - 1] == "\n" and len(text[i:].split("\n")[0]) >= 30)
    shown = text[line:].split("\n")[0][:80]
    d = delta[line : line + len(shown)]
    scaled = ((d - delta.min()) / (delta.max() - delta.min()) * (len(BARS) - 1)).round().long().tolist()
    return {
        "delta_by_char": dict(sorted(mean.items(), key=lambda kv: -kv[1])),
        "line": shown,
        "bars": "".join(BARS[i] for i in scaled),
    }


def shipped_selectivity(args: argparse.Namespace) -> dict:
    """:func:`selectivity` of a shipped SSM character model (``--selectivity``) over the last 10% of ``--text``."""
    from captioner.pretrained import load_lm

    lm = load_lm(args.selectivity)
    text = Path(args.text).read_text(encoding="utf-8")
    found = selectivity(lm.model, lm.vocab.encode(text[int(0.9 * len(text)) :]), lm.vocab.chars)
    print(f"\n{args.selectivity}: step size Δ by character (largest first):", found["delta_by_char"])
    print(found["line"] + "\n" + found["bars"])
    return found


# ---------------------------------------------------------------- the report


def plot(speed: dict[str, dict[int, float]], args: argparse.Namespace) -> None:
    """Seconds per training batch against sequence length, one line per cell."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    for kind, by in speed.items():
        ax.plot(args.lengths, [args.batch * n / by[n] for n in args.lengths], marker="o", label=kind.upper())
    ax.set_xlabel("sequence length (characters)")
    ax.set_ylabel(f"seconds per batch of {args.batch} (fwd + bwd)")
    ax.set_title("Training time against sequence length, equal parameters")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"wrote {args.png}")


def report(results: dict, args: argparse.Namespace) -> None:
    """The figures as tables on stdout."""
    mem, speed = results["memory"], results["training_chars_per_s"]
    print(
        f"\n{'cell':5} {'hidden':>6} {'params':>9} "
        + " ".join(f"{'train@' + str(n):>11}" for n in args.lengths)
        + f" {'sample':>8} {'state':>7} {'act@256 MB':>10}"
    )
    for kind in KINDS:
        m = mem[kind]
        print(
            f"{kind:5} {m['hidden']:6} {m['parameters']:9,} "
            + " ".join(f"{speed[kind][n]:11,.0f}" for n in args.lengths)
            + f" {results['sampling_chars_per_s'][kind]:8,.0f} "
            f"{m['state_numbers_after_100']:7,} {m['training_activation_bytes_at_256'] / 2**20:10.1f}"
        )
    for n in args.lengths:
        print(f"SSM / LSTM training chars/s at length {n}: {speed['ssm'][n] / speed['lstm'][n]:.2f}x")
    for name, flows in results["gradient_flow"].items():
        print(f"\ngradient flow ({name}), ‖∂loss_T/∂s_(T-d)‖ / (d = 1):  d = " + "  ".join(map(str, DISTANCES)))
        for kind, by in flows.items():
            print(f"  {kind:5} " + "  ".join(f"{by[d]:.2e}" for d in DISTANCES))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--hidden",
        type=number(int, low=8, high=4096),
        default=256,
        help="the LSTM's width (and the embedding's); the RNN and SSM get the LSTM's parameter count",
    )
    p.add_argument("--layers", type=number(int, low=1, high=8), default=1)
    p.add_argument("--batch", type=number(int, low=1, high=4096), default=64)
    p.add_argument("--lengths", type=number(int, low=1, high=100_000), nargs="+", default=[64, 256, 1024])
    p.add_argument("--rounds", type=number(int, low=1, high=100), default=3)
    p.add_argument("--sample-chars", type=number(int, low=1, high=10**6), default=500)
    p.add_argument(
        "--long-sample",
        type=number(int, low=100, high=10**6),
        default=10_000,
        help="the long sample whose state size is checked against that after 100 characters",
    )
    p.add_argument("--text", help="a UTF-8 text file to train on (first 90%%) and validate on (last 10%%)")
    p.add_argument("--minutes", type=number(float, low=0, high=600), default=0, help="wall time per cell")
    p.add_argument("--train-cells", nargs="+", choices=KINDS, default=["lstm", "ssm"])
    p.add_argument("--every", type=number(float, above=0, high=600), default=2, help="minutes between val losses")
    p.add_argument("--slice", type=number(float, above=0, high=3600), default=20, help="seconds per turn")
    p.add_argument("--bptt", type=number(int, low=1, high=10_000), default=128)
    p.add_argument("--train-batch", type=number(int, low=1, high=4096), default=32)
    p.add_argument("--lr", type=number(float, above=0, high=1), default=2e-3)
    p.add_argument("--val-chunks", type=number(int, low=1, high=10_000), default=64)
    p.add_argument("--val-length", type=number(int, low=1, high=100_000), default=256)
    p.add_argument(
        "--threads",
        type=number(int, low=0, high=1024),
        default=0,
        help="torch CPU threads (0: torch's default); 1 is faster on a busy machine",
    )
    p.add_argument(
        "--selectivity",
        metavar="WEIGHTS",
        help="an SSM character model's entry or folder: print its Δ by character over the last 10%% of --text",
    )
    p.add_argument("--skip-speed", action="store_true", help="only the training comparison")
    p.add_argument("--png", help="write the training-time plot here")
    p.add_argument("--json", help="write every figure here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.selectivity and not args.text:
        raise SystemExit("cells.py: error: --selectivity needs --text")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = build_models(args)
    results: dict = {"settings": {k: v for k, v in vars(args).items()}, "threads": torch.get_num_threads()}
    if not args.skip_speed:
        print(f"training chars/s, batch {args.batch}, {args.rounds} rounds:", flush=True)
        results["training_chars_per_s"] = training_speed(models, args)
        results["sampling_chars_per_s"] = sampling_speed(models, args)
        results["memory"] = memory(models, args)
        text = torch.randint(VOCAB, (8, max(DISTANCES) + 21), generator=torch.Generator().manual_seed(0))
        results["gradient_flow"] = {"random init": {k: gradient_flow(m, text) for k, m in models.items()}}
        report(results, args)
        if args.png:
            plot(results["training_chars_per_s"], args)
    if args.text and args.minutes:
        train, val, chars = read_text(args.text)
        trained = {
            k: CharModel(k, args.hidden, models[k].cell.hidden_size, args.layers, len(chars)) for k in args.train_cells
        }
        print(f"\nequal wall time ({args.minutes:g} min each) on {args.text}:", flush=True)
        results["val_curves"] = train_equal_time(trained, train, val, args)
        text = chunks(val, 8, max(DISTANCES) + 20, torch.Generator().manual_seed(1))
        results.setdefault("gradient_flow", {})["trained"] = {k: gradient_flow(m, text) for k, m in trained.items()}
        if "ssm" in trained:
            results["selectivity"] = selectivity(trained["ssm"], val, chars)
            print("\nSSM step size Δ by character (largest first):", results["selectivity"]["delta_by_char"])
            print(results["selectivity"]["line"] + "\n" + results["selectivity"]["bars"])
        for kind, curve in results["val_curves"].items():
            print(f"{kind}: val {curve[-1][2]:.3f} nats/char after {curve[-1][0]:.1f} min ({curve[-1][1]:,} chars)")
    if args.selectivity:
        results["selectivity_shipped"] = shipped_selectivity(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return results


if __name__ == "__main__":
    main()
