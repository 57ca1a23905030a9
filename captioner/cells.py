"""The recurrent cells every model uses: the caption decoder, the VQA question encoder and the language model.

A cell is a stack of ``num_layers`` recurrent layers with two ways to run:

- :meth:`sequence` runs a whole sequence ``(N, T, input)`` in one fused call, for training and teacher forcing;
- :meth:`step` runs one time step ``(N, input)``, for decoding and sampling, with a state of fixed size; with
  ``projected=True`` it takes the first layer's :meth:`input_term` instead of the input (computed once per
  character of a vocabulary: the character model's sampling).

A state is a tuple of tensors, each ``(layers, N, ...)``, named by :attr:`state_kinds`: ``("h",)`` for the
vanilla RNN, ``("h", "c")`` for the LSTM (stored in that order, as ``nn.LSTM`` takes them), each
``(layers, N, hidden)``; ``("ssm", "conv")`` for the selective state-space cell of :mod:`captioner.ssm`. The atlas
and the gradient tools name them as ``kind``. :meth:`summary` turns a final state into one vector per sequence
(the VQA question vector).

The two classic cells subclass PyTorch's own ``nn.RNN`` and ``nn.LSTM``, so their parameters keep PyTorch's names
(``weight_ih_l0``, ...) and every trained checkpoint loads as it is. Adding a cell kind means a class with the
same members and an entry in :data:`CELLS`; :func:`matched_hidden` gives the width at which two kinds have equal
parameter counts.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .ssm import SSM, SSMConfig

State = tuple[torch.Tensor, ...]  # each (layers, N, ...); see state_kinds


class Cell(Protocol):
    """What every cell offers (the classic cells are also ``nn.Module`` s, and so must a new one be)."""

    state_kinds: tuple[str, ...]
    hidden_size: int
    num_layers: int

    def zero_state(self, n: int, like: torch.Tensor | None = None) -> State: ...

    def sequence(
        self, inputs: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]: ...

    def step(self, x: torch.Tensor, state: State, projected: bool = False) -> tuple[torch.Tensor, State]: ...

    def input_term(self, x: torch.Tensor) -> torch.Tensor: ...

    @property
    def summary_size(self) -> int: ...

    def summary(self, state: State) -> torch.Tensor: ...


class _Classic:
    """The fused sequence pass and the zero state of :class:`RNN` and :class:`LSTM` (mixed into PyTorch's classes)."""

    state_kinds: tuple[str, ...]

    def zero_state(self, n: int, like: torch.Tensor | None = None) -> State:
        """The state before the first step, for ``n`` sequences (on ``like``'s device and dtype, if given)."""
        shape = (self.num_layers, n, self.hidden_size)  # (layers, N, hidden)
        zeros = torch.zeros(shape) if like is None else like.new_zeros(shape)
        return tuple(zeros for _ in self.state_kinds)

    def sequence(
        self, inputs: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """The recurrence over ``inputs`` ``(N, T, input)``: outputs ``(N, T, hidden)`` and the final state.

        With ``lengths`` ``(N,)`` the padded steps are skipped (a packed sequence): each row's final state is the
        one after its last real step, and the outputs past it are zero."""
        hx = None if state is None else (state if len(state) > 1 else state[0])
        if lengths is None:
            out, hx = self(inputs, hx)
        else:
            packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, hx = self(packed, hx)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=inputs.shape[1])
        return out, (hx if isinstance(hx, tuple) else (hx,))

    @property
    def summary_size(self) -> int:
        """The width of :meth:`summary`: every layer's h (and c)."""
        return len(self.state_kinds) * self.num_layers * self.hidden_size

    def summary(self, state: State) -> torch.Tensor:
        """A final state as one vector ``(N, states · layers · hidden)``: every part of every layer, side by side."""
        return torch.cat(state, dim=0).transpose(0, 1).reshape(state[0].shape[1], -1)

    def _layer_weights(self, layer: int) -> list[torch.Tensor]:
        return [getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def input_term(self, x: torch.Tensor, layer: int = 0) -> torch.Tensor:
        """``W_ih x + b_ih + b_hh`` of ``layer``, ``(N, gates · hidden)``: the part of a step that depends on its
        input alone. ``step(..., projected=True)`` takes it in place of the first layer's input, so a model whose
        inputs are rows of a fixed table (a character embedding) can compute it once per row, as sampling does."""
        w = self._layer_weights(layer)
        return nn.functional.linear(x, w[0], w[2]) + w[3]


class RNN(_Classic, nn.RNN):
    """The vanilla tanh RNN of the lecture: ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)``."""

    state_kinds = ("h",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, nonlinearity="tanh", batch_first=True, dropout=dropout)

    def step(self, x: torch.Tensor, state: State, projected: bool = False) -> tuple[torch.Tensor, State]:
        """One time step: ``x`` ``(N, input)`` (or, ``projected``, its :meth:`input_term`) to the top layer's
        ``h`` ``(N, hidden)`` and the new state.

        Written out with the layer weights: for one step this is about twice as fast on a CPU as ``nn.RNN`` on a
        length-1 sequence."""
        new_h = []
        for layer in range(self.num_layers):
            term = x if projected and layer == 0 else self.input_term(x, layer)  # (N, hidden)
            x = torch.tanh(torch.addmm(term, state[0][layer], self._layer_weights(layer)[1].t()))  # + W_hh h
            new_h.append(x)  # (N, hidden)
        return x, (torch.stack(new_h),)


class LSTM(_Classic, nn.LSTM):
    """The LSTM: gates decide what the cell state ``c_t`` forgets and takes in, and what ``h_t`` shows of it."""

    state_kinds = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)

    def step(self, x: torch.Tensor, state: State, projected: bool = False) -> tuple[torch.Tensor, State]:
        """One time step, as :meth:`RNN.step` (PyTorch's gate order: input, forget, cell, output). Few operations
        on purpose: sampling runs this once per character, where each costs about as much as its arithmetic."""
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            term = x if projected and layer == 0 else self.input_term(x, layer)  # (N, 4H)
            pre = torch.addmm(term, state[0][layer], self._layer_weights(layer)[1].t())  # + W_hh h  (N, 4H)
            i, f, _, o = pre.sigmoid().chunk(4, dim=1)  # one sigmoid for the three gates (g's is unused)
            g = pre[:, 2 * self.hidden_size : 3 * self.hidden_size].tanh()  # (N, hidden)
            c = torch.addcmul(f * state[1][layer], i, g)  # f ⊙ c + i ⊙ g  (N, hidden)
            x = o * c.tanh()  # (N, hidden)
            new_h.append(x)
            new_c.append(c)
        return x, (torch.stack(new_h), torch.stack(new_c))


CELLS: dict[str, Callable[..., nn.Module]] = {"lstm": LSTM, "rnn": RNN, "ssm": SSM}


def build_cell(kind: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0) -> nn.Module:
    """A cell of ``kind`` (a key of :data:`CELLS`); dropout applies between stacked layers only."""
    if kind not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {kind!r}")
    return CELLS[kind](input_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)


def state_kinds(kind: str) -> tuple[str, ...]:
    """The state names of a cell kind, without building one."""
    return CELLS[kind].state_kinds


def channels(kind: str, hidden_size: int) -> int:
    """Values per layer in each part of a ``kind`` cell's state, as the atlas reads them: ``hidden_size`` for the
    RNN and the LSTM, the SSM's channels (``expand · hidden_size``) for it."""
    return hidden_size * (SSMConfig().expand if kind == "ssm" else 1)


def parameter_count(kind: str, input_size: int, hidden_size: int, num_layers: int = 1) -> int:
    """The parameters of a cell, counted without allocating it (built on the meta device)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_cell(kind, input_size, hidden_size, num_layers).parameters())


def matched_hidden(
    kind: str, like: str, input_size: int, hidden_size: int, num_layers: int = 1, multiple: int = 8
) -> int:
    """The hidden size (a multiple of ``multiple``) at which a ``kind`` cell has about as many parameters as a
    ``like`` cell of ``hidden_size`` (both ``num_layers`` deep, reading ``input_size``): equal-size comparisons."""
    target = parameter_count(like, input_size, hidden_size, num_layers)
    sizes = range(multiple, 4 * hidden_size + multiple, multiple)
    return min(sizes, key=lambda h: abs(parameter_count(kind, input_size, h, num_layers) - target))
