"""min-char-rnn, the lecture's 112 lines of numpy (Karpathy, 2015), rewritten here to be read beside the real model.

    python -m captioner.lecture.min_char_rnn --text FILE [--iterations 5000] [--seed 0]

A vanilla RNN of 100 units reads 25 characters at a time, one-hot, and predicts each next one:

    h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)        y_t = W_hy h_t + b_y        p_t = softmax(y_t)

Backpropagation through time over the 25 steps, every gradient clipped element-wise to [-5, 5], Adagrad at 0.1;
the last hidden state of one chunk (``hprev``) starts the next: truncated backpropagation through time, as
`captioner lm train --batches streams` does with a batch of streams instead of one. Every ``--every`` iterations
it prints the smoothed loss and a 200-character sample. The same settings as the original; the code is new.
"""

from __future__ import annotations

import argparse

import numpy as np

HIDDEN, SEQ, LR = 100, 25, 1e-1


def loss_and_gradients(params: dict, inputs: list[int], targets: list[int], hprev: np.ndarray, vocab: int):
    """Loss over one chunk, the gradient of every parameter, and the last hidden state."""
    xs, hs, ps = {}, {-1: hprev}, {}
    loss = 0.0
    for t, ch in enumerate(inputs):  # forward
        xs[t] = np.zeros((vocab, 1))
        xs[t][ch] = 1  # one-hot
        hs[t] = np.tanh(params["Wxh"] @ xs[t] + params["Whh"] @ hs[t - 1] + params["bh"])
        y = params["Why"] @ hs[t] + params["by"]
        ps[t] = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        loss -= np.log(ps[t][targets[t], 0])
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dh_next = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):  # backward through time
        dy = ps[t].copy()
        dy[targets[t]] -= 1  # softmax + cross-entropy
        grads["Why"] += dy @ hs[t].T
        grads["by"] += dy
        dh = params["Why"].T @ dy + dh_next
        dpre = (1 - hs[t] ** 2) * dh  # through tanh
        grads["bh"] += dpre
        grads["Wxh"] += dpre @ xs[t].T
        grads["Whh"] += dpre @ hs[t - 1].T
        dh_next = params["Whh"].T @ dpre
    for g in grads.values():
        np.clip(g, -5, 5, out=g)  # element-wise clipping against exploding gradients
    return loss, grads, hs[len(inputs) - 1]


def sample(params: dict, h: np.ndarray, seed_id: int, n: int, vocab: int, rng: np.random.Generator) -> list[int]:
    """``n`` character ids drawn one at a time, each fed back in."""
    x, out = np.zeros((vocab, 1)), []
    x[seed_id] = 1
    for _ in range(n):
        h = np.tanh(params["Wxh"] @ x + params["Whh"] @ h + params["bh"])
        y = params["Why"] @ h + params["by"]
        p = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        ix = int(rng.choice(vocab, p=p.ravel()))
        x = np.zeros((vocab, 1))
        x[ix] = 1
        out.append(ix)
    return out


def train(text: str, iterations: int, every: int, seed: int = 0) -> float:
    """Train on ``text`` for ``iterations`` chunks, printing as it goes; returns the final smoothed loss."""
    chars = sorted(set(text))
    vocab, index = len(chars), {c: i for i, c in enumerate(chars)}
    rng = np.random.default_rng(seed)
    params = {
        "Wxh": rng.standard_normal((HIDDEN, vocab)) * 0.01,
        "Whh": rng.standard_normal((HIDDEN, HIDDEN)) * 0.01,
        "Why": rng.standard_normal((vocab, HIDDEN)) * 0.01,
        "bh": np.zeros((HIDDEN, 1)),
        "by": np.zeros((vocab, 1)),
    }
    memory = {k: np.zeros_like(v) for k, v in params.items()}  # Adagrad's sums of squares
    smooth, p, hprev = -np.log(1.0 / vocab) * SEQ, 0, np.zeros((HIDDEN, 1))
    for n in range(iterations):
        if p + SEQ + 1 >= len(text):
            p, hprev = 0, np.zeros((HIDDEN, 1))  # back to the start: a fresh state
        inputs = [index[c] for c in text[p : p + SEQ]]
        targets = [index[c] for c in text[p + 1 : p + SEQ + 1]]
        if every and n % every == 0:
            drawn = "".join(chars[i] for i in sample(params, hprev, inputs[0], 200, vocab, rng))
            print(f"----\n{drawn}\n----\niteration {n}, loss {smooth / SEQ:.3f} nats/char")
        loss, grads, hprev = loss_and_gradients(params, inputs, targets, hprev, vocab)
        smooth = smooth * 0.999 + loss * 0.001
        for k in params:
            memory[k] += grads[k] * grads[k]
            params[k] -= LR * grads[k] / np.sqrt(memory[k] + 1e-8)
        p += SEQ
    return smooth / SEQ


def main(argv: list[str] | None = None) -> None:
    from ..data.text import read_documents

    parser = argparse.ArgumentParser(
        prog="python -m captioner.lecture.min_char_rnn", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--text", required=True, help="a UTF-8 text file or folder")
    parser.add_argument("--iterations", type=int, default=5000, help="chunks of 25 characters (default: 5000)")
    parser.add_argument("--every", type=int, default=1000, help="print every N iterations (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    text = "".join(d.text for d in read_documents([args.text]))
    print(f"final smoothed loss {train(text, args.iterations, args.every, args.seed):.3f} nats/char")


if __name__ == "__main__":
    main()
