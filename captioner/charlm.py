"""A character-level language model: the lecture's "hello" model over [h, e, l, o], grown to any UTF-8 text.

    x_t = E[c_t]                               the character's embedding (one-hot c_t times a matrix: a row lookup)
    h_t = cell(x_t, h_{t-1})                   1..N layers of the shared cells (captioner.cells): rnn or lstm
    p(c_{t+1} | c_1..c_t) = softmax(W_hy h_t)  a distribution over the next character

The model reads characters (Unicode code points, not bytes) and predicts the next one; its vocabulary is the set
of characters of its training text (:class:`CharVocab`), plus U+FFFD for any character it never saw.
The recurrence is the caption decoder's (:func:`captioner.cells.build_cell`); sampling draws with
:func:`captioner.decoding.filter_logits` and :func:`captioner.decoding.sample_words`, as caption sampling does.

    from captioner.charlm import load_lm, sample
    lm = load_lm("lm-shakespeare-v1")
    for ch in sample(lm.model, lm.vocab, SampleConfig(prime="ROMEO:", length=200, seed=0)):
        print(ch, end="", flush=True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from .cells import CELLS, State, build_cell
from .decoding import MIN_SAMPLING, filter_logits, sample_words
from .io import shorten
from .settings import MAX_DIM, MAX_LAYERS, check, setting

UNKNOWN = "\ufffd"  # stands for every character the training text lacked; always id 0
CHARS_FORMAT = "captioner characters"  # vocab.json's "format" for a character vocabulary
MAX_CHARS = 1 << 16  # distinct characters a vocabulary may hold
MAX_SAMPLE = 100_000  # characters one sample may draw


class CharVocab:
    """The characters a model reads and writes, by id: ``chars[0]`` is U+FFFD (any unseen character)."""

    def __init__(self, chars: Sequence[str]):
        if not chars or chars[0] != UNKNOWN:
            raise ValueError(f"a character vocabulary starts with U+FFFD, not {shorten(str(chars[:1]))}")
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad or len(set(chars)) != len(chars) or len(chars) > MAX_CHARS:
            raise ValueError(
                f"characters must be {MAX_CHARS} or fewer unique single characters"
                + (f", not {shorten(str(bad[0]))!r}" if bad else "")
            )
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls([UNKNOWN, *sorted(set(text) - {UNKNOWN})])

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """Ids ``(len(text),)``, unseen characters as 0 (U+FFFD)."""
        return torch.tensor([self.index.get(c, 0) for c in text], dtype=torch.long)

    def unknown(self, text: str) -> int:
        """How many characters of ``text`` the vocabulary lacks."""
        return sum(c not in self.index for c in text)

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> dict:
        return {"format": CHARS_FORMAT, "chars": self.chars}


@dataclass
class CharLMConfig:
    """The shape of a character model; saved in ``config.json["model"]`` beside the weights."""

    vocab_size: int = setting(256, "characters in the vocabulary (set by the training text)", low=2, high=MAX_CHARS)
    embed_dim: int = setting(
        64, "character embedding size (the lecture's one-hot input, as a learnt row per character)", low=1, high=MAX_DIM
    )
    hidden_dim: int = setting(512, "units per recurrent layer", low=1, high=MAX_DIM)
    num_layers: int = setting(2, "stacked recurrent layers", low=1, high=MAX_LAYERS)
    cell: str = setting("lstm", "recurrent cell", choices=tuple(CELLS))
    dropout: float = setting(0.0, "dropout on each layer's output during training", low=0.0, below=1.0)

    def __post_init__(self) -> None:
        check(self)


class CharLM(nn.Module):
    """Embedding, recurrent layers, ``W_hy``: logits of the next character after each character read."""

    def __init__(self, config: CharLMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.cell = build_cell(config.cell, config.embed_dim, config.hidden_dim, config.num_layers, config.dropout)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_dim, config.vocab_size)  # W_hy

    def zero_state(self, n: int) -> State:
        return self.cell.zero_state(n, self.head.weight)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits ``(N, T, vocab)`` after each of ``ids`` ``(N, T)``, from ``state`` (None: zeros), and the state
        after the last one: pass it back in to read on, as truncated backpropagation through time does."""
        x = self.drop(self.embed(ids))  # (N, T, embed)
        h, state = self.cell.sequence(x, state)  # (N, T, hidden)
        return self.head(self.drop(h)), state  # (N, T, vocab)

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One character per row, ``ids`` ``(N,)``: logits ``(N, vocab)`` and the new state (for sampling)."""
        h, state = self.cell.step(self.embed(ids), state)  # (N, hidden)
        return self.head(h), state

    def loss(self, chunk: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Mean cross-entropy in nats per character of predicting ``chunk[:, 1:]`` from ``chunk[:, :-1]``
        (``chunk`` ``(N, T + 1)``), and the state after the inputs."""
        logits, state = self(chunk[:, :-1], state)  # (N, T, vocab)
        return nn.functional.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten()), state


def detach(state: State) -> State:
    """The state's values without their history: the "truncated" of truncated backpropagation through time."""
    return tuple(s.detach() for s in state)


# ---------------------------------------------------------------- sampling


@dataclass
class SampleConfig:
    """How to draw a sample: the one place for each setting's default, range and help (CLI, app and Python)."""

    prime: str = setting("\n", "text the model reads first; the sample continues it (printed first)")
    length: int = setting(500, "characters to draw after the prime", low=1, high=MAX_SAMPLE)
    temperature: float = setting(
        1.0, "divide the logits by this: below 1 sharper and safer, above 1 wilder", low=MIN_SAMPLING, high=100.0
    )
    top_k: int = setting(0, "draw only from the K likeliest characters (0: all)", low=0, high=MAX_CHARS)
    seed: int | None = setting(
        None,
        "random seed: the same seed gives the same text on the same machine (none: a fresh draw)",
        low=0,
        high=2**63 - 1,
    )

    def __post_init__(self) -> None:
        check(self)
        if not self.prime:
            raise ValueError("prime must hold at least one character (the model needs something to read)")


@torch.inference_mode()
def sample(model: CharLM, vocab: CharVocab, cfg: SampleConfig) -> Iterator[str]:
    """The prime, then ``cfg.length`` characters drawn one at a time, each yielded as soon as it is drawn.

    A step is one small matrix-vector product per layer, so each extra tensor operation costs about as much as the
    arithmetic: the first layer's input term is computed once per character of the vocabulary
    (:meth:`captioner.cells.LSTM.input_term`), the temperature and the ban on U+FFFD are folded into a copy of
    ``W_hy``, and the random numbers are drawn up front (the same stream as one draw per character).
    docs/experiments.md has the figures."""
    model.eval()
    generator = torch.Generator()
    if cfg.seed is None:
        generator.seed()
    else:
        generator.manual_seed(cfg.seed)
    uniforms = torch.rand(cfg.length, 1, 1, generator=generator)  # (length, 1, 1): one draw per character
    weight = (model.head.weight / cfg.temperature).t()  # (hidden, vocab): W_hy / T
    bias = model.head.bias / cfg.temperature  # (vocab,)
    bias[0] = float("-inf")  # never write U+FFFD: it stands for characters the model never saw
    table = model.cell.input_term(model.embed.weight)  # (vocab, ...): row c is what character c adds to a step
    yield cfg.prime
    _, state = model(vocab.encode(cfg.prime[:-1])[None]) if len(cfg.prime) > 1 else (None, model.zero_state(1))
    ids = vocab.encode(cfg.prime[-1:])  # (1,)
    for uniform in uniforms:
        h, state = model.cell.step(table[ids], state, projected=True)  # (1, hidden)
        logits = filter_logits(torch.addmm(bias, h, weight), cfg.top_k, 1.0)  # (1, vocab)
        ids = sample_words(logits.softmax(-1), uniform)  # (1,)
        yield vocab.chars[int(ids)]


# ---------------------------------------------------------------- scoring


@dataclass
class Score:
    """Loss of a text under a model: nats and bits per character over ``chars`` predicted characters."""

    nats: float
    chars: int
    unknown: int  # characters the vocabulary lacks (scored as U+FFFD, which the model never predicts well)

    @property
    def bits(self) -> float:
        return self.nats / math.log(2)

    def as_dict(self) -> dict:
        return {
            "nats_per_char": round(self.nats, 5),
            "bits_per_char": round(self.bits, 5),
            "chars": self.chars,
            "unknown_chars": self.unknown,
        }


@torch.inference_mode()
def evaluate(
    model: CharLM, ids: torch.Tensor, streams: int = 16, chunk: int = 1000, progress: bool = False
) -> tuple[float, int]:
    """Total nats and count of predicting ``ids[1:]`` from what precedes, the state carried all the way.

    The text is cut into ``streams`` contiguous pieces read side by side (a batch), each from a zero state, so
    ``streams - 1`` characters lose their history; ``streams=1`` reads it as one sequence (slower)."""
    from .progress import progress_bar

    model.eval()
    inputs, targets = ids[:-1], ids[1:]
    streams = max(1, min(streams, len(targets)))
    width = math.ceil(len(targets) / streams)
    pad = width * streams - len(targets)  # the last stream's tail, ignored
    inputs = torch.cat([inputs, inputs.new_zeros(pad)]).view(streams, width)  # (S, W)
    targets = torch.cat([targets, targets.new_full((pad,), -100)]).view(streams, width)  # (S, W)
    state, total = model.zero_state(streams), 0.0
    bar = progress_bar(width, "scoring", "step", disable=not progress)
    for start in range(0, width, chunk):
        logits, state = model(inputs[:, start : start + chunk], state)  # (S, chunk, vocab)
        total += float(
            nn.functional.cross_entropy(
                logits.flatten(0, 1), targets[:, start : start + chunk].flatten(), reduction="sum"
            )
        )
        bar.update(min(chunk, width - start))
    bar.close()
    return total, len(ids) - 1


def score_text(model: CharLM, vocab: CharVocab, text: str, streams: int = 16, progress: bool = False) -> Score:
    """The :class:`Score` of ``text`` (at least two characters)."""
    if len(text) < 2:
        raise ValueError("a text of at least two characters is needed to score a prediction")
    total, count = evaluate(model, vocab.encode(text), streams, progress=progress)
    return Score(total / count, count, vocab.unknown(text))
