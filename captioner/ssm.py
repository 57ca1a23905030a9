"""A selective state-space cell (Mamba-style), the lecture's "modern RNN", beside the RNN and the LSTM.

A stack of ``num_layers`` blocks on a residual stream ``u_t`` of width ``hidden`` (``E = expand · hidden``
channels inside a block, split into ``heads`` heads of ``P = E / heads`` channels; ``N`` = ``state_size``)::

    x_t, z_t = W_in · norm(u_t)                       (E,) each
    x̃_t      = silu(conv(x)_t)                         the short causal depthwise convolution over x_{t-k+1..t}
    Δ_t      = softplus(W_Δ x̃_t + b_Δ)                 (heads,)  the step size: how much of x_t is let in
    B_t, C_t = W_B x̃_t, W_C x̃_t                       (N,) each: what is written to the state, what is read
    h_t      = exp(Δ_t A) h_{t-1} + Δ_t x̃_t B_tᵀ       (heads, P, N)  A < 0 one per head (diagonal)
    y_t      = h_t C_t + D ⊙ x̃_t                       (E,)
    u_t     += W_out (y_t ⊙ silu(z_t))                 (hidden,)

and a final norm. Δ, B and C depend on the input: that is Mamba's *selectivity*. A large Δ_t forgets the old
state and takes in x_t (the cell "lets in"); a Δ_t near 0 keeps h_{t-1} as it is (the cell "holds").

As in Mamba-2 (Dao & Gu 2024), Δ and A are shared by the channels of a head and B, C by all heads. This is
what makes the training pass fast on a CPU: the decay between two steps is then one number per head, so a chunk
of ``Q`` steps is computed with matrix products (the "state-space duality"), never materialising the
``(T, E, N)`` states Mamba-1's per-channel A needs (measured here, that alone was slower than ``nn.LSTM``).
A is initialised as S4D-real over the heads (A_h = -(h + 1)) and Δ log-uniformly in ``[dt_min, dt_max]``.

- :meth:`SSM.sequence` runs the recurrence as a chunked parallel scan: within a chunk, the outputs are a masked
  ``(Q, Q)`` product of decays; between chunks, the states pass on by the same rule one level up. Public
  operations only (cumsum, exp, matmul).
- :meth:`SSM.step` runs one step in O(1): the state is ``ssm`` ``(layers, n, heads, P, N)`` and ``conv``
  ``(layers, n, E, k - 1)`` (the last inputs the convolution still needs), whatever the length.
- With ``lengths``, Δ is 0 and the input 0 at the padded steps, so the state passes them unchanged.

The state parts are named ``ssm`` and ``conv`` (not ``h``), so that ``h`` keeps one meaning in every model: the
vector the output layer reads (here the top block's normalised output). This file does not import
:mod:`captioner.cells` (which registers it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .settings import MAX_DIM, check, setting

State = tuple[torch.Tensor, ...]  # (ssm (layers, n, heads, P, N), conv (layers, n, E, k - 1))


@dataclass(frozen=True)
class SSMConfig:
    """The SSM's own settings (its width and depth are the cell's ``hidden_size`` and ``num_layers``)."""

    state_size: int = setting(16, "N: the size of each channel's state (B_t, C_t have N entries)", low=1, high=1024)
    expand: int = setting(2, "channels inside a block per unit of the residual stream", low=1, high=16)
    heads: int = setting(
        8,
        "heads, each with its own A and Δ_t for its channels (fewer where they do not divide "
        "E: their greatest common divisor)",
        low=1,
        high=MAX_DIM,
    )
    conv_width: int = setting(4, "k: the causal convolution's width in steps", low=1, high=64)
    dt_min: float = setting(0.001, "the smallest initial step size Δ", above=0)
    dt_max: float = setting(0.1, "the largest initial step size Δ", above=0)
    chunk: int = setting(32, "steps per chunk of the parallel scan (speed only, not the result)", low=1, high=4096)

    def __post_init__(self) -> None:
        check(self)
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min ({self.dt_min:g}) must not exceed dt_max ({self.dt_max:g})")


# ---------------------------------------------------------------- the scan


def segsum(a: torch.Tensor) -> torch.Tensor:
    """``(..., Q)`` log decays to ``(..., Q, Q)``: entry ``[t, s]`` is ``a_{s+1} + ... + a_t`` (the log of the
    decay from step s to step t) for ``s <= t``, and -inf above the diagonal (no path back in time)."""
    q = a.shape[-1]
    cum = a.cumsum(-1)  # (..., Q)
    diff = cum[..., :, None] - cum[..., None, :]  # (..., Q, Q)
    causal = torch.ones(q, q, dtype=torch.bool, device=a.device).tril()  # (Q, Q)
    return diff.masked_fill(~causal, -math.inf)


def scan(
    x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, h0: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y_t = h_t C_t`` for ``h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ``, all steps at once in chunks of ``chunk``.

    ``x`` ``(n, T, H, P)``, ``dt`` ``(n, T, H)``, ``a`` ``(H,)`` (negative), ``b``, ``c`` ``(n, T, N)``, ``h0``
    ``(n, H, P, N)``; returns ``y`` ``(n, T, H, P)`` and the last state ``(n, H, P, N)``."""
    n, t, heads, p = x.shape
    q = min(chunk, t)
    pad = -t % q  # padded steps: Δ = 0, x = 0, so the state passes them unchanged
    if pad:
        x, dt, b, c = (nn.functional.pad(v, (0, 0) * (v.dim() - 2) + (0, pad)) for v in (x, dt, b, c))
    k = x.shape[1] // q
    x = x.view(n, k, q, heads, p).permute(0, 3, 1, 2, 4)  # (n, H, K, Q, P)
    dt = dt.view(n, k, q, heads).permute(0, 3, 1, 2)  # (n, H, K, Q)
    log_a = dt * a[:, None, None]  # (n, H, K, Q): log decay of each step
    cum = log_a.cumsum(-1)  # (n, H, K, Q): log decay from the chunk's start
    b, c = b.view(n, k, q, -1), c.view(n, k, q, -1)  # (n, K, Q, N)
    # Δ_s multiplies the (Q, Q) and (Q, N) factors below, never x itself: smaller than x when N, Q < P (the default)
    # 1. inside each chunk: y_t = sum_{s<=t} (C_t . B_s) exp(a_{s+1} + ... + a_t) Δ_s x_s
    scores = (c @ b.transpose(-1, -2))[:, None] * (segsum(log_a).exp() * dt[..., None, :])  # (n, H, K, Q, Q)
    y = scores @ x  # (n, H, K, Q, P)
    # 2. what each chunk adds to the state by its end: sum_s exp(a_{s+1} + ... + a_end) Δ_s x_s B_sᵀ
    to_end = (cum[..., -1:] - cum).exp() * dt  # (n, H, K, Q)
    added = x.transpose(-1, -2) @ (b[:, None] * to_end[..., None])  # (n, H, K, P, N)
    # 3. between chunks, the same recurrence one level up: the state entering each chunk, and the last
    states = torch.cat([h0[:, :, None], added], dim=2)  # (n, H, K + 1, P, N)
    through = segsum(nn.functional.pad(cum[..., -1], (1, 0))).exp()  # (n, H, K + 1, K + 1)
    states = (through @ states.flatten(-2)).view(n, heads, k + 1, p, -1)  # (n, H, K + 1, P, N)
    # 4. what the entering state adds to each step's output: C_t, decayed from the chunk's start, reads it
    y = y + (c[:, None] * cum.exp()[..., None]) @ states[:, :, :-1].transpose(-1, -2)  # (n, H, K, Q, P)
    y = y.permute(0, 2, 3, 1, 4).reshape(n, k * q, heads, p)[:, :t]  # (n, T, H, P)
    return y, states[:, :, -1]


# ---------------------------------------------------------------- one block


class Block(nn.Module):
    """One selective SSM block (the module docstring's equations, without the residual)."""

    def __init__(self, hidden: int, config: SSMConfig):
        super().__init__()
        c = config
        e = c.expand * hidden
        self.config, self.inner, self.heads = c, e, math.gcd(e, c.heads)
        self.head_dim = e // self.heads
        self.norm = nn.LayerNorm(hidden)
        self.in_proj = nn.Linear(hidden, 2 * e, bias=False)  # -> x, z
        self.conv = nn.Conv1d(e, e, c.conv_width, groups=e)  # depthwise, causal (left context only)
        self.x_proj = nn.Linear(e, self.heads + 2 * c.state_size, bias=False)  # -> Δ (before the bias), B, C
        self.dt_bias = nn.Parameter(self._dt_bias(c, self.heads))  # (heads,)
        self.a_log = nn.Parameter(torch.arange(1, self.heads + 1, dtype=torch.float).log())  # S4D-real: A_h = -(h+1)
        self.skip = nn.Parameter(torch.ones(e))  # D
        self.readout = nn.Parameter(torch.full((c.state_size,), c.state_size**-0.5))  # for summary() only
        self.out_proj = nn.Linear(e, hidden, bias=False)

    @staticmethod
    def _dt_bias(c: SSMConfig, heads: int) -> torch.Tensor:
        """softplus⁻¹ of step sizes log-uniform in [dt_min, dt_max], one per head (Mamba's initialisation)."""
        u = torch.rand(heads)
        dt = torch.exp(u * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min))  # (heads,)
        return dt + torch.log(-torch.expm1(-dt))

    def _selection(self, xc: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Δ ``(..., heads)``, B and C ``(..., N)`` from the convolved input ``xc`` ``(..., E)``."""
        dt, b, c = self.x_proj(xc).split([self.heads, self.config.state_size, self.config.state_size], -1)
        return nn.functional.softplus(dt + self.dt_bias), b, c

    def sequence(
        self,
        u: torch.Tensor,
        h: torch.Tensor,
        conv: torch.Tensor,
        keep: torch.Tensor | None,
        lengths: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block over ``u`` ``(n, T, hidden)`` from state ``h`` ``(n, H, P, N)`` and ``conv`` ``(n, E, k-1)``:
        its output ``(n, T, hidden)``, the last states, and Δ ``(n, T, heads)``. ``keep`` ``(n, T, 1)`` is 0 at
        padded steps (``lengths`` ``(n,)`` the real steps)."""
        n, t, _ = u.shape
        x, z = self.in_proj(self.norm(u)).chunk(2, dim=-1)  # (n, T, E) each
        if keep is not None:
            x = x * keep
        xs = torch.cat([conv, x.transpose(1, 2)], dim=2)  # (n, E, k - 1 + T): the carried inputs first
        xc = nn.functional.silu(self.conv(xs).transpose(1, 2))  # (n, T, E)
        dt, b, c = self._selection(xc)  # (n, T, heads), (n, T, N), (n, T, N)
        if keep is not None:
            dt = dt * keep  # Δ = 0: the padded steps change nothing
        a = -self.a_log.exp()  # (heads,)
        y, h = scan(xc.view(n, t, *h.shape[1:3]), dt, a, b, c, h, self.config.chunk)  # (n, T, H, P)
        y = y.reshape(n, t, self.inner) + self.skip * xc  # (n, T, E)
        out = self.out_proj(y * nn.functional.silu(z))  # (n, T, hidden)
        width = conv.shape[2]
        if lengths is None:
            conv = xs[:, :, xs.shape[2] - width :]  # (n, E, k - 1): the last inputs
        else:  # each row's last inputs before its padding: xs columns lengths .. lengths + k - 2
            index = lengths.to(xs.device)[:, None] + torch.arange(width, device=xs.device)  # (n, k - 1)
            conv = xs.gather(2, index[:, None].expand(-1, self.inner, -1))  # (n, E, k - 1)
        return out, h, conv, dt

    def step(
        self, u: torch.Tensor, h: torch.Tensor, conv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: ``u`` ``(n, hidden)``, ``h`` ``(n, H, P, N)``, ``conv`` ``(n, E, k - 1)`` to the block's
        output ``(n, hidden)`` and the new states. O(1) in the steps taken before."""
        n = u.shape[0]
        x, z = self.in_proj(self.norm(u)).chunk(2, dim=-1)  # (n, E) each
        window = torch.cat([conv, x[:, :, None]], dim=2)  # (n, E, k)
        xc = nn.functional.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias)  # (n, E)
        dt, b, c = self._selection(xc)  # (n, heads), (n, N), (n, N)
        decay = (dt * -self.a_log.exp()).exp()  # (n, heads)
        xdt = xc.view(n, *h.shape[1:3]) * dt[..., None]  # (n, H, P)
        h = decay[..., None, None] * h + xdt[..., None] * b[:, None, None, :]  # (n, H, P, N)
        y = (h @ c[:, None, :, None]).reshape(n, self.inner) + self.skip * xc  # (n, E)
        return self.out_proj(y * nn.functional.silu(z)), h, window[:, :, 1:]


# ---------------------------------------------------------------- the cell


class SSM(nn.Module):
    """The selective SSM as a cell: the same members as :class:`captioner.cells.RNN` and ``LSTM``."""

    state_kinds = ("ssm", "conv")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        config: SSMConfig | None = None,
    ):
        super().__init__()
        self.config = config or SSMConfig()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.input = nn.Identity() if input_size == hidden_size else nn.Linear(input_size, hidden_size)
        self.blocks = nn.ModuleList(Block(hidden_size, self.config) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(
        self, inputs: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        return self.sequence(inputs, state, lengths)

    def zero_state(self, n: int, like: torch.Tensor | None = None) -> State:
        """The state before the first step, for ``n`` sequences (on ``like``'s device and dtype, if given)."""
        c, block = self.config, self.blocks[0]
        shapes = (
            (self.num_layers, n, block.heads, block.head_dim, c.state_size),  # ssm
            (self.num_layers, n, block.inner, c.conv_width - 1),
        )  # conv
        return tuple(torch.zeros(s) if like is None else like.new_zeros(s) for s in shapes)

    def sequence(
        self, inputs: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """The recurrence over ``inputs`` ``(n, T, input)``: outputs ``(n, T, hidden)`` and the final state; with
        ``lengths`` ``(n,)``, each row's state after its last real step, and zero outputs past it."""
        out, state, _ = self.trace(inputs, state, lengths)
        return out, state

    def trace(
        self, inputs: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """:meth:`sequence`, also giving every layer's step sizes Δ ``(layers, n, T, heads)``: its selectivity."""
        n, t, _ = inputs.shape
        state = self.zero_state(n, inputs) if state is None else state
        keep = None
        if lengths is not None:
            keep = (torch.arange(t, device=inputs.device) < lengths.to(inputs.device)[:, None])[..., None]
            keep = keep.to(inputs.dtype)  # (n, T, 1)
        u = self.input(inputs)  # (n, T, hidden)
        hs, convs, dts = [], [], []
        for layer, block in enumerate(self.blocks):
            out, h, conv, dt = block.sequence(u, state[0][layer], state[1][layer], keep, lengths)
            u = u + self.dropout(out)  # (n, T, hidden)
            hs.append(h)
            convs.append(conv)
            dts.append(dt)
        out = self.norm(u)  # (n, T, hidden)
        if keep is not None:
            out = out * keep
        return out, (torch.stack(hs), torch.stack(convs)), torch.stack(dts)

    def input_term(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream's first value ``(n, hidden)`` for inputs ``x`` ``(n, input)``: what a step computes
        from its input alone (see :meth:`captioner.cells.LSTM.input_term`)."""
        return self.input(x)

    def step(self, x: torch.Tensor, state: State, projected: bool = False) -> tuple[torch.Tensor, State]:
        """One step: ``x`` ``(n, input)`` (or, ``projected``, its :meth:`input_term`) to the top layer's output
        ``(n, hidden)`` and the new state."""
        u = x if projected else self.input(x)  # (n, hidden)
        hs, convs = [], []
        for layer, block in enumerate(self.blocks):
            out, h, conv = block.step(u, state[0][layer], state[1][layer])
            u = u + self.dropout(out)  # (n, hidden)
            hs.append(h)
            convs.append(conv)
        return self.norm(u), (torch.stack(hs), torch.stack(convs))

    @property
    def summary_size(self) -> int:
        """The width of :meth:`summary`: every layer's channels."""
        return self.num_layers * self.blocks[0].inner

    def summary(self, state: State) -> torch.Tensor:
        """A final state as one vector ``(n, layers · E)``: each channel's state ``(N,)`` read out by a learned
        vector (as ``C_t`` reads it, but fixed), for the VQA question encoder."""
        read = torch.stack([block.readout for block in self.blocks])  # (layers, N)
        flat = (state[0] * read[:, None, None, None, :]).sum(-1)  # (layers, n, H, P)
        return flat.flatten(2).transpose(0, 1).flatten(1)  # (n, layers · E)
