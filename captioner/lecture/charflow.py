"""How far back a character model's gradient reaches: ‖∂ log p(x_T) / ∂s_t‖ at distances up to hundreds of characters.

The caption decoder's version (:mod:`captioner.lecture.gradients`) can look 10 words back; a character model can
look 200 characters back, where the lecture's point becomes plain. For a vanilla RNN,
``∂h_{t+1}/∂h_t = diag(tanh'(·)) W_hh``, so the gradient is a product of one such factor per character and shrinks
(or grows) geometrically, as the largest singular value of ``W_hh`` and the saturation of ``tanh`` decide; the
LSTM's additive cell update ``c_{t+1} = f ⊙ c_t + i ⊙ g`` lets it shrink only as fast as the forget gates close.

Windows of text are read with :meth:`CharLM.step` after a warm-up (so the state is a typical one, not zeros).
``s_t`` is the state after reading character ``t``; the last state, which predicts ``x_T``, is at distance 1.
``kinds=("h",)`` measures ``h_t`` of every layer, ``("h", "c")`` the LSTM's whole state. The selective SSM
predicts from a step's output, not from its state (``kinds=("ssm", "conv")``: its whole state): its ``s_t`` is the
state the step reading character ``t + 1`` starts from, so its distance 1 is the state the last step starts from,
as in :func:`captioner.lecture.gradients.last_word_gradients`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..charlm import CharLM, detach


def window_gradients(
    model: CharLM, windows: torch.Tensor, warmup: torch.Tensor | None = None, kinds: Sequence[str] = ("h",)
) -> torch.Tensor:
    """‖∂ log p(x_T) / ∂s_t‖ ``(N, T)`` by distance 1..T (column 0: distance 1) for ``windows`` ``(N, T + 1)``:
    characters ``0..T-1`` are read, the last is the one predicted. ``warmup`` ``(N, W)``: read first, without
    gradient."""
    model.eval()
    for kind in kinds:
        if kind not in model.cell.state_kinds:
            raise ValueError(f"kind must be one of {', '.join(model.cell.state_kinds)}, not {kind!r}")
    with torch.no_grad():
        state = model(warmup)[1] if warmup is not None and warmup.shape[1] else model.zero_state(len(windows))
    parts = [model.cell.state_kinds.index(kind) for kind in kinds]
    read_from_state = "h" in model.cell.state_kinds  # the RNN and the LSTM predict from h, the SSM from its output
    with torch.enable_grad():
        state = tuple(s.clone().requires_grad_(True) for s in detach(state))
        tracked = []
        for t in range(windows.shape[1] - 1):
            if not read_from_state:
                tracked.append([state[p] for p in parts])  # the state this step starts from
            logits, state = model.step(windows[:, t], state)  # (N, vocab)
            if read_from_state:
                tracked.append([state[p] for p in parts])  # each (layers, N, hidden): the logits read it
        if read_from_state:
            logits = model.head(state[0][-1])  # (N, vocab): from the tracked state, so distance 1 counts
        target = logits.log_softmax(-1).gather(1, windows[:, -1:]).sum()  # log p(x_T), summed over the windows
        flat = [s for step in tracked for s in step]
        grads = torch.autograd.grad(target, flat, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(s) for g, s in zip(grads, flat)]
    squares = torch.stack([g.square().transpose(0, 1).flatten(1).sum(1) for g in grads])  # (steps · parts, N)
    squares = squares.view(len(tracked), len(parts), -1).sum(1)
    return squares.sqrt().T.flip(1)  # (N, T): by distance 1, 2, ...


def largest_singular_values(model: CharLM) -> list[float]:
    """σ_max of each layer's recurrent matrix ``W_hh`` (for the LSTM, its cell-input block ``W_hg``, the one the
    state passes through on its way to the cell): above 1 the product of Jacobians can explode, below 1 it
    vanishes."""
    values = []
    for layer in range(model.config.num_layers):
        w = getattr(model.cell, f"weight_hh_l{layer}").detach()
        if model.config.cell == "lstm":
            hidden = model.config.hidden_dim
            w = w[2 * hidden : 3 * hidden]  # PyTorch's gate order: input, forget, cell, output
        values.append(float(torch.linalg.matrix_norm(w, ord=2)))
    return values


def clipping_effect(model: CharLM, chunk: torch.Tensor, scales: Sequence[float], clip_norm: float) -> list[dict]:
    """The exploding side: the gradient norm of one chunk's loss with ``W_hh`` scaled to σ_max = each of
    ``scales`` (a copy of the model), and the norm of the step that clipping at ``clip_norm`` lets through."""
    import copy

    rows = []
    for scale in scales:
        probe = copy.deepcopy(model).train()
        with torch.no_grad():
            for layer in range(probe.config.num_layers):
                w = getattr(probe.cell, f"weight_hh_l{layer}")
                w.mul_(scale / float(torch.linalg.matrix_norm(w, ord=2)))
        loss, _ = probe.loss(chunk)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(probe.parameters(), clip_norm))
        rows.append({"sigma_max": scale, "grad_norm": norm, "clipped_to": min(norm, clip_norm)})
    return rows
