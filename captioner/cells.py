"""The recurrent cells every model uses: the caption decoder, the VQA question encoder and the language model.

A cell is a stack of ``num_layers`` recurrent layers with two ways to run:

- :meth:`sequence` runs a whole sequence ``(N, T, input)`` in one fused call, for training and teacher forcing;
- :meth:`step` runs one time step ``(N, input)``, for decoding and sampling, with a state of fixed size.

A state is a tuple of tensors, each ``(layers, N, hidden)``, named by :attr:`state_kinds`: ``("h",)`` for the
vanilla RNN, ``("h", "c")`` for the LSTM (stored in that order, as ``nn.LSTM`` takes them). The atlas and the
gradient tools name them as ``kind`` ("h" or "c").

The two classic cells subclass PyTorch's own ``nn.RNN`` and ``nn.LSTM``, so their parameters keep PyTorch's names
(``weight_ih_l0``, ...) and every trained checkpoint loads as it is. Adding a cell kind means a class with the
same four members and an entry in :data:`CELLS`.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

State = tuple[torch.Tensor, ...]  # each (layers, N, hidden); see state_kinds


class Cell(Protocol):
    """What every cell offers (the classic cells are also ``nn.Module`` s, and so must a new one be)."""

    state_kinds: tuple[str, ...]
    hidden_size: int
    num_layers: int

    def zero_state(self, n: int, like: torch.Tensor | None = None) -> State: ...

    def sequence(self, inputs: torch.Tensor, state: State | None = None,
                 lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State]: ...

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]: ...


class _Classic:
    """The fused sequence pass and the zero state of :class:`RNN` and :class:`LSTM` (mixed into PyTorch's classes)."""

    state_kinds: tuple[str, ...]

    def zero_state(self, n: int, like: torch.Tensor | None = None) -> State:
        """The state before the first step, for ``n`` sequences (on ``like``'s device and dtype, if given)."""
        shape = (self.num_layers, n, self.hidden_size)  # (layers, N, hidden)
        zeros = torch.zeros(shape) if like is None else like.new_zeros(shape)
        return tuple(zeros for _ in self.state_kinds)

    def sequence(self, inputs: torch.Tensor, state: State | None = None,
                 lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
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

    def _layer_weights(self, layer: int) -> list[torch.Tensor]:
        return [getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


class RNN(_Classic, nn.RNN):
    """The vanilla tanh RNN of the lecture: ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)``."""

    state_kinds = ("h",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, nonlinearity="tanh", batch_first=True, dropout=dropout)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step: ``x`` ``(N, input)`` to the top layer's ``h`` ``(N, hidden)`` and the new state.

        Written out with the layer weights: for one step this is about twice as fast on a CPU as ``nn.RNN`` on a
        length-1 sequence."""
        new_h = []
        for layer in range(self.num_layers):
            w = self._layer_weights(layer)
            x = torch.tanh(nn.functional.linear(x, w[0], w[2]) + nn.functional.linear(state[0][layer], w[1], w[3]))
            new_h.append(x)  # (N, hidden)
        return x, (torch.stack(new_h),)


class LSTM(_Classic, nn.LSTM):
    """The LSTM: gates decide what the cell state ``c_t`` forgets and takes in, and what ``h_t`` shows of it."""

    state_kinds = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step, as :meth:`RNN.step` (PyTorch's gate order: input, forget, cell, output)."""
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            w = self._layer_weights(layer)
            pre = nn.functional.linear(x, w[0], w[2]) + nn.functional.linear(state[0][layer], w[1], w[3])  # (N, 4H)
            i, f, g, o = pre.chunk(4, dim=1)
            c = torch.sigmoid(f) * state[1][layer] + torch.sigmoid(i) * torch.tanh(g)  # (N, hidden)
            x = torch.sigmoid(o) * torch.tanh(c)  # (N, hidden)
            new_h.append(x)
            new_c.append(c)
        return x, (torch.stack(new_h), torch.stack(new_c))


CELLS: dict[str, Callable[..., nn.Module]] = {"lstm": LSTM, "rnn": RNN}


def build_cell(kind: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0) -> nn.Module:
    """A cell of ``kind`` (a key of :data:`CELLS`); dropout applies between stacked layers only."""
    if kind not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {kind!r}")
    return CELLS[kind](input_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)


def state_kinds(kind: str) -> tuple[str, ...]:
    """The state names of a cell kind, without building one."""
    return CELLS[kind].state_kinds
