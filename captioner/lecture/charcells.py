"""The interpretable cells of a character model, found and labelled automatically (Karpathy, Johnson & Fei-Fei,
"Visualizing and Understanding Recurrent Networks", 2015).

Signals computed from the text itself, one value per character: the state *after* reading it, as ``h_t`` is (so
an opening quote or bracket is inside, a closing one outside):

- ``quote``: inside a double-quoted string (``\\"`` escapes a quote);
- ``comment``: inside ``/* ... */`` or after ``//`` up to the end of the line (from the ``/`` on);
- ``column``: characters since the last newline (0 at the newline);
- ``depth``: ``{ }`` nesting depth;
- ``if``: inside an ``if`` statement: from the keyword ``if`` (a whole word, followed by ``(``) through its condition
  and its body, a ``{ }`` block or, without braces, up to the ``;`` that ends the statement (``else`` not included);
- classes: ``digit`` (the character is a digit), ``upper`` (upper case), ``paren`` (inside ``( )``).

Strings, comments and character literals (``'"'``) hide the braces, parentheses and ``if`` s inside them; outside
C code (prose) an apostrophe is only a character literal when it closes one character later, so "don't" is prose.

For every cell (``h`` and ``c`` of every layer; for the selective SSM, every channel of its state and of its
convolution's window, :func:`cell_values`) the atlas gives its correlation ``r`` with every signal, over the
text read as side-by-side streams with the state carried; and for every signal the cells with the largest
``|r|``. :mod:`captioner.lecture.charviews` draws a text coloured character by character by one cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from ..cells import channels
from ..charlm import CharLM, CharVocab
from ..schema import LM_ATLAS_FORMAT

DEFINITIONS = {
    "quote": "inside a double-quoted string",
    "comment": "inside /* */ or after // to the end of the line",
    "column": "characters since the last newline",
    "depth": "{ } nesting depth",
    "if": "inside an if statement: the keyword, its condition and its body ({ } block, or up to the ;)",
    "digit": "the character is a digit",
    "upper": "the character is upper case",
    "paren": "inside ( )",
}
SIGNALS = tuple(DEFINITIONS)
TOP_CELLS = 5  # best cells kept per signal
_CHAR_LITERAL = re.compile(r"'(\\.|[^\\'\n])'")


@dataclass
class _Scanner:
    """The state of a left-to-right reading of C-like text (see the module's definitions)."""

    mode: str = ""  # "", "string", "char", "line" or "block" (comment)
    escaped: bool = False
    column: int = 0
    depth: int = 0
    parens: int = 0
    ifs: list = field(default_factory=list)  # open if statements: [phase, level]
    start: int = 0  # where the comment began

    def read(self, text: str, i: int) -> None:
        ch = text[i]
        self.column = 0 if ch == "\n" else self.column + 1
        if self.mode:
            self._inside(text, i, ch)
            return
        if ch == '"':
            self.mode = "string"
        elif ch == "/" and text[i + 1 : i + 2] in ("*", "/"):
            self.mode = "block" if text[i + 1] == "*" else "line"
            self.start = i
        elif ch == "'" and _CHAR_LITERAL.match(text, i):
            self.mode = "char"
        else:
            self._code(text, i, ch)

    def _inside(self, text: str, i: int, ch: str) -> None:
        """A character inside a string, a character literal or a comment: only its end matters."""
        if self.mode in ("string", "char"):
            if ch == ('"' if self.mode == "string" else "'") and not self.escaped:
                self.mode = ""
            self.escaped = ch == "\\" and not self.escaped
        elif (
            self.mode == "line"
            and ch == "\n"
            or self.mode == "block"
            and ch == "/"
            and text[i - 1] == "*"
            and i - self.start > 2
        ):
            self.mode = ""

    def _code(self, text: str, i: int, ch: str) -> None:
        """Braces, parentheses and if statements, outside strings and comments."""
        if ch == "f" and text[i - 1 : i] == "i" and not _word(text, i - 2) and not _word(text, i + 1):
            after = text[i + 1 :].lstrip(" \t")
            if after.startswith("("):
                self.ifs.append(["keyword", 0])
        for state in self.ifs:
            if state[0] == "wait" and not ch.isspace():
                state[:] = ["block", self.depth] if ch == "{" else ["statement", self.parens]
        if ch == "(":
            self.parens += 1
            for state in self.ifs:
                if state[0] == "keyword":
                    state[:] = ["condition", self.parens]
        elif ch == ")":
            for state in self.ifs:
                if state[0] == "condition" and state[1] == self.parens:
                    state[0] = "wait"
            self.parens = max(self.parens - 1, 0)
        elif ch == "{":
            self.depth += 1
        elif ch == "}":
            self.depth = max(self.depth - 1, 0)
            self.ifs = [s for s in self.ifs if not (s[0] == "block" and s[1] == self.depth)]
        elif ch == ";":
            self.ifs = [s for s in self.ifs if not (s[0] == "statement" and s[1] >= self.parens)]


def _word(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")


def text_signals(text: str) -> dict[str, np.ndarray]:
    """Every signal of :data:`SIGNALS`, one float per character of ``text`` (after reading it)."""
    values = np.zeros((len(text), len(SIGNALS)), dtype=np.float32)
    scan = _Scanner()
    for i, ch in enumerate(text):
        scan.read(text, i)
        values[i] = (
            scan.mode == "string",
            scan.mode in ("line", "block"),
            scan.column,
            scan.depth,
            bool(scan.ifs),
            ch.isdigit(),
            ch.isupper(),
            scan.parens > 0,
        )
    return {name: values[:, k] for k, name in enumerate(SIGNALS)}


# ---------------------------------------------------------------- reading a text with a model


def state_names(model: CharLM) -> list[tuple[str, int]]:
    """(kind, layer) of every state the model has, ``c`` before ``h``: the order of :func:`trace` 's columns."""
    kinds = sorted(model.cell.state_kinds)
    return [(kind, layer) for kind in kinds for layer in range(model.config.num_layers)]


def cell_values(part: torch.Tensor) -> torch.Tensor:
    """One value per cell ``(N, cells)`` from one layer's part of a state: ``h`` and ``c`` ``(N, hidden)`` as they
    are. The SSM's parts hold several numbers per channel, so each channel is read as one: its state
    ``(N, heads, P, N_state)`` summed over its ``N_state`` entries, its convolution window ``(N, E, k - 1)`` as
    the newest input it holds (the block's ``x_t``)."""
    if part.dim() == 2:
        return part
    if part.dim() == 3:
        return part[..., -1] if part.shape[-1] else part.new_zeros(part.shape[:2])
    return part.sum(-1).flatten(1)


def cell_width(model: CharLM) -> int:
    """Cells per (kind, layer): the hidden size, or the SSM's channels."""
    return channels(model.config.cell, model.config.hidden_dim)


@torch.inference_mode()
def trace(model: CharLM, ids: torch.Tensor, state=None):
    """The states after every character of ``ids`` ``(N, T)``: yields ``(t, values (N, states * hidden))`` per step,
    the states in :func:`state_names` order, and keeps ``state`` carried from step to step."""
    model.eval()
    state = state if state is not None else model.zero_state(ids.shape[0])
    order = [model.cell.state_kinds.index(kind) for kind, _ in state_names(model)]
    layers = [layer for _, layer in state_names(model)]
    for t in range(ids.shape[1]):
        _, state = model.step(ids[:, t], state)
        yield t, torch.cat([cell_values(state[k][layer]) for k, layer in zip(order, layers)], dim=1)


def correlations(model: CharLM, vocab: CharVocab, text: str, streams: int = 32, progress: bool = False) -> np.ndarray:
    """``r`` ``(states * hidden, signals)``: each cell's correlation with each signal over ``text``, read as
    ``streams`` contiguous pieces side by side, each from a zero state. A constant cell or signal has r 0."""
    from ..progress import progress_bar

    width = len(text) // streams
    ids = vocab.encode(text[: width * streams]).view(streams, width)  # (S, W)
    pieces = [text[s * width : (s + 1) * width] for s in range(streams)]  # each read from a fresh start
    signals = np.stack([np.stack(list(text_signals(piece).values()), 1) for piece in pieces])  # (S, W, signals)
    y = torch.from_numpy(signals).double()
    cells = cell_width(model) * len(state_names(model))
    sx, sxx, sxy = (
        torch.zeros(cells, dtype=torch.float64),
        torch.zeros(cells, dtype=torch.float64),
        torch.zeros(cells, len(SIGNALS), dtype=torch.float64),
    )
    bar = progress_bar(width, "reading", "step", disable=not progress)
    for t, x in trace(model, ids):
        x = x.double()  # (S, cells)
        sx += x.sum(0)
        sxx += (x * x).sum(0)
        sxy += x.T @ y[:, t]
        bar.update(1)
    bar.close()
    n = width * streams
    flat = y.reshape(n, -1)
    sy, syy = flat.sum(0), (flat * flat).sum(0)
    cov = sxy / n - torch.outer(sx / n, sy / n)
    std = torch.outer((sxx / n - (sx / n) ** 2).clamp(min=0).sqrt(), (syy / n - (sy / n) ** 2).clamp(min=0).sqrt())
    return torch.where(std > 1e-9, cov / std.clamp(min=1e-12), torch.zeros_like(cov)).clamp(-1, 1).numpy()


def build_atlas(
    model: CharLM, vocab: CharVocab, text: str, streams: int = 32, progress: bool = False, source: str = ""
) -> dict:
    """The atlas of ``model`` over ``text`` (the JSON that ``cells.json`` holds; see the module's docstring)."""
    r = correlations(model, vocab, text, streams, progress)  # (cells, signals)
    names, hidden = state_names(model), cell_width(model)
    means = {name: float(v.mean()) for name, v in text_signals(text).items()}
    signals = {}
    for k, name in enumerate(SIGNALS):
        best = np.argsort(-np.abs(r[:, k]))[:TOP_CELLS]
        signals[name] = {
            "definition": DEFINITIONS[name],
            "mean": round(means[name], 4),
            "best": [
                {
                    "state": names[i // hidden][0],
                    "layer": names[i // hidden][1],
                    "cell": int(i % hidden),
                    "r": round(float(r[i, k]), 4),
                }
                for i in best
            ],
        }
    every = {
        f"{kind}{layer}": {
            name: [round(float(v), 3) for v in r[j * hidden : (j + 1) * hidden, k]] for k, name in enumerate(SIGNALS)
        }
        for j, (kind, layer) in enumerate(names)
    }
    return {
        "format": LM_ATLAS_FORMAT,
        "text": source,
        "chars": len(text) // streams * streams,
        "streams": streams,
        "signals": signals,
        "r": every,
    }


def summary(atlas: dict) -> list[str]:
    """One line per signal: its best cell and r."""
    lines = []
    for name, signal in atlas["signals"].items():
        top = signal["best"][0]
        if top["r"] == 0:
            lines.append(f"{name:<8} -        (constant in this text: {signal['definition']})")
            continue
        lines.append(
            f"{name:<8} r {top['r']:+.3f}  {top['state']}[layer {top['layer']}][{top['cell']}]  "
            f"({signal['definition']})"
        )
    return lines
