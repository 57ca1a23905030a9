"""The caption decoder: an LSTM (or vanilla tanh RNN, or selective SSM) language model conditioned on an image vector.

The recurrence is ``h_t = f(W_xh x_t + W_hh h_{t-1} + W_ih v)``, where ``v`` is the projected
mean of the encoder's region features. Feeding ``[x_t; v]`` as the input of one ``nn.LSTM``
gives exactly the ``W_xh x_t + W_ih v`` sum, so training runs the whole sequence in a single
fused call with no Python loop over time steps. Where the image enters only once (``first_step``,
``init_state``), what it contributes is layer-normalised, so that the image vector, which grows in
training, cannot saturate the recurrence into one state for every image.

With ``attention=True`` the decoder also looks at the regions when it picks each word: ``h_t``
queries the projected regions (scaled dot product), and the attended context is added to
``h_t`` before the output layer. The query is ``h_t`` itself, not ``h_{t-1}`` (as in Lu et al.
2017, "Knowing When to Look"), so attention sits on top of the recurrence instead of inside it,
and training still needs one ``nn.LSTM`` call plus two batched matrix products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import cells
from .cells import State
from .settings import MAX_DIM, MAX_LAYERS, check, setting

CELLS = tuple(cells.CELLS)
IMAGE_INPUTS = ("every_step", "first_step", "init_state")


@dataclass
class DecoderConfig:
    """Shape of the decoder. ``image_input`` says where ``v`` enters the recurrence. These settings are the
    training settings too (``train_caption.TrainConfig`` takes them from here: default, range and help)."""

    vocab_size: int  # these two the data decides
    feature_dim: int
    embed_dim: int = setting(256, "size of the word embeddings", low=1, high=MAX_DIM)
    hidden_dim: int = setting(512, "size of the recurrent state", low=1, high=MAX_DIM)
    image_dim: int = setting(
        512, "size of the projected image vector (and of the attended regions)", low=1, high=MAX_DIM
    )
    num_layers: int = setting(1, "stacked recurrent layers", low=1, high=MAX_LAYERS)
    cell: str = setting(
        "lstm",
        "recurrent cell: lstm, rnn (a vanilla tanh RNN) or ssm (a selective state-space model, Mamba-style)",
        choices=CELLS,
    )
    image_input: str = setting(
        "every_step", "where the image enters: every_step, first_step or init_state", choices=IMAGE_INPUTS
    )
    dropout: float = setting(0.3, "dropout probability", low=0, below=1)
    attention: bool = setting(False, "also attend over the encoder's region grid when choosing each word")

    def __post_init__(self) -> None:
        check(self)
        if self.image_input == "init_state" and self.cell not in ("lstm", "rnn"):
            raise ValueError(
                f"image_input init_state sets an LSTM's or RNN's h (and c); with cell {self.cell} use "
                "every_step or first_step"
            )

    @property
    def state_kinds(self) -> tuple[str, ...]:
        """The recurrent states as the app and the atlas list them, one value per hidden unit: ``c`` (the LSTM's
        cell) and ``h``, or ``h`` alone (RNN, SSM). ``h`` is the top layer's output, what the next word is read
        from; for the SSM that is not its state (``ssm`` and ``conv``, :mod:`captioner.ssm`), which has no value
        per hidden unit and is measured by the gradient tools instead."""
        return ("c", "h") if self.cell == "lstm" else ("h",)


@dataclass
class EncodedImage:
    """What the decoder reads from a batch of images: ``v`` for the recurrence, regions for attention."""

    v: torch.Tensor  # (N, image_dim)
    regions: torch.Tensor | None  # (N, R, image_dim); None without attention

    def __len__(self) -> int:
        return self.v.shape[0]

    def repeat_interleave(self, k: int) -> "EncodedImage":
        """Each image ``k`` times in a row (one per beam or sample)."""
        regions = None if self.regions is None else self.regions.repeat_interleave(k, 0)
        return EncodedImage(self.v.repeat_interleave(k, 0), regions)


class CaptionDecoder(nn.Module):
    """Predicts the next word from the previous words and the image features."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        c = config
        self.image_proj = nn.Sequential(nn.Linear(c.feature_dim, c.image_dim), nn.ReLU(), nn.Dropout(c.dropout))
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(c.dropout)
        input_dim = c.embed_dim + (0 if c.image_input == "init_state" else c.image_dim)
        self.rnn = cells.build_cell(c.cell, input_dim, c.hidden_dim, c.num_layers, c.dropout)
        if c.image_input == "init_state":
            self.init_state = nn.Linear(c.image_dim, 2 * c.num_layers * c.hidden_dim)
        if c.attention:
            self.region_proj = nn.Sequential(nn.Linear(c.feature_dim, c.image_dim), nn.ReLU(), nn.Dropout(c.dropout))
            self.query = nn.Linear(c.hidden_dim, c.image_dim, bias=False)
            self.context = nn.Linear(c.image_dim, c.hidden_dim)
        self.out = nn.Linear(c.hidden_dim, c.vocab_size)

    # ----------------------------------------------------------- shared pieces

    def encode_image(self, features: torch.Tensor) -> EncodedImage:
        """Project CNN region features ``(N, R, feature_dim)`` (or pooled ``(N, feature_dim)``)
        to the image vector ``v`` and, with attention, the regions the decoder attends to."""
        if features.dim() == 2:
            features = features[:, None]  # (N, 1, feature_dim)
        regions = self.region_proj(features) if self.config.attention else None  # (N, R, image_dim)
        return EncodedImage(self.image_proj(features.mean(1)), regions)  # v: (N, image_dim)

    def _attend(self, h: torch.Tensor, image: EncodedImage) -> torch.Tensor:
        """Hidden states ``(N, T, hidden)`` plus what they attend to in their image's regions."""
        if image.regions is None:
            return h
        scores = self.query(h) @ image.regions.transpose(1, 2) / math.sqrt(self.config.image_dim)  # (N, T, R)
        return h + self.context(scores.softmax(-1) @ image.regions)  # (N, T, image_dim) -> (N, T, hidden)

    def initial_state(self, image: EncodedImage) -> State:
        c, v = self.config, image.v  # v: (N, image_dim)
        n = v.shape[0]
        if c.image_input == "init_state":
            # Layer-normalised before the tanh (see the module docstring): a plain tanh(W v) saturates.
            pre = self.init_state(v).view(n, 2, c.num_layers, c.hidden_dim)  # (N, 2, layers, hidden)
            # each (layers, N, hidden)
            h, cell = torch.tanh(nn.functional.layer_norm(pre, pre.shape[-1:])).permute(1, 2, 0, 3)
            h, cell = h.contiguous(), cell.contiguous()
            return (h, cell) if c.cell == "lstm" else (h,)
        return self.rnn.zero_state(n, like=v)  # each (layers, N, ...)

    def _inputs(self, tokens: torch.Tensor, v: torch.Tensor, first_step: bool) -> torch.Tensor:
        """RNN inputs ``[x_t; v]`` for tokens ``(N, T)``; ``v`` is zeroed after step 0 in first_step mode."""
        x = self.dropout(self.embed(tokens))  # (N, T, embed_dim)
        mode = self.config.image_input
        if mode == "init_state":
            return x
        if mode == "first_step":  # v only at step 0, layer-normalised (see the module docstring)
            keep = torch.zeros(tokens.shape[1], 1, device=v.device)  # (T, 1)
            if first_step:
                keep[0] = 1.0
            img = nn.functional.layer_norm(v, v.shape[-1:]).unsqueeze(1) * keep  # (N, T, image_dim)
        else:
            img = v.unsqueeze(1).expand(-1, tokens.shape[1], -1)  # (N, T, image_dim)
        return torch.cat([x, img], dim=-1)  # (N, T, embed_dim + image_dim)

    # ----------------------------------------------------------- training

    def forward(self, features: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-word logits for the valid positions only.

        ``tokens`` is ``(N, T)`` starting with ``<start>``; ``lengths`` counts the inputs of each row
        (caption words + ``<start>``). Returns logits ``(sum(lengths), vocab)`` in the row-major order
        of ``mask = arange(T) < lengths``, matching ``tokens[:, 1:][mask]`` as targets.
        """
        image = self.encode_image(features)
        inputs = self._inputs(tokens[:, :-1], image.v, first_step=True)  # (N, T - 1, input_dim)
        out, _ = self.rnn.sequence(inputs, self.initial_state(image), lengths)  # (N, T - 1, hidden)
        out = self._attend(out, image)
        mask = torch.arange(inputs.shape[1], device=tokens.device)[None, :] < lengths[:, None].to(tokens.device)
        return self.out(self.dropout(out[mask]))  # (sum(lengths), vocab)

    # ----------------------------------------------------------- inference

    def step(self, tokens: torch.Tensor, state: State, image: EncodedImage, first: bool) -> tuple[torch.Tensor, State]:
        """One decoding step: previous tokens ``(N,)`` to next-word log-probabilities ``(N, vocab)``."""
        h, state = self.read(tokens, state, image, first)
        return self.log_probs(h, image), state

    def read(self, tokens: torch.Tensor, state: State, image: EncodedImage, first: bool) -> tuple[torch.Tensor, State]:
        """One step of the recurrence: previous tokens ``(N,)`` to the top layer's output ``h`` ``(N, hidden)``."""
        x = self._inputs(tokens[:, None], image.v, first_step=first)[:, 0]  # (N, input_dim)
        return self.rnn.step(x, state)  # h: (N, hidden), the top layer's

    def log_probs(self, h: torch.Tensor, image: EncodedImage) -> torch.Tensor:
        """Next-word log-probabilities ``(N, vocab)`` from the top layer's state ``h`` ``(N, hidden)``."""
        x = self._attend(h[:, None], image)[:, 0]  # (N, hidden)
        return torch.log_softmax(self.out(x), dim=-1)  # (N, vocab)


WORD_ROWS = ("embed.weight", "out.weight", "out.bias")  # the decoder tensors with a row per vocabulary word


def grow_word_rows(weights: dict[str, torch.Tensor], vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Decoder weights for a vocabulary grown to ``vocab_size`` words (new words at the end), for fine-tuning on
    text with words the trained vocabulary lacks. The trained rows are kept as they are. A new word's embedding
    and output row start as the mean of the trained rows plus a little noise (so new words differ), and its
    output bias as the lowest trained one: the word starts as likely as the rarest known word, and training
    decides how much more."""
    generator = torch.Generator().manual_seed(seed)
    grown = dict(weights)
    for name in WORD_ROWS:
        old = weights[name]
        new = vocab_size - old.shape[0]
        if new < 0:
            raise ValueError(f"{name}: {old.shape[0]} rows, more than the {vocab_size} words to grow to")
        if name == "out.bias":
            rows = old.min().expand(new)
        else:
            noise = torch.randn(new, old.shape[1], generator=generator, dtype=old.dtype)
            rows = old.mean(0) + noise * 0.01 * old.std()
        grown[name] = torch.cat([old, rows])
    return grown
