"""How far back the last word's gradient reaches: ‖∂ log p(w_T) / ∂h_t‖ for every earlier step t of one caption.

The lecture's argument, measured: in a vanilla RNN, ``∂h_{t+1}/∂h_t = diag(tanh'(·)) W_hh``, so the gradient of a
late word with respect to an early state is a product of such factors and (typically) shrinks geometrically
with the distance; the LSTM's additive cell update ``c_{t+1} = f ⊙ c_t + i ⊙ g`` gives it a path that shrinks
only as fast as the forget gates close.

The caption is teacher-forced through the decoder (dropout off) with :meth:`CaptionDecoder.step`, the same
recurrence as decoding. Row ``t`` of the result belongs to the top layer's ``h_t``, the state after reading
``<start>`` and the first ``t`` words; ``w_T`` (the last word) is predicted from ``h_{T-1}``, so row ``t`` lies at
distance ``T - t`` from it: distance 1 is the state that predicts the word, distance ``T`` the one after ``<start>``.

For the LSTM the state is the pair ``(h_t, c_t)``: ``kinds=("h", "c")`` measures the gradient with respect to both,
which is where the lecture says the LSTM's gradient flows (``∂ log p(w_T)/∂c_{T-1}`` is 0, as the word is read
from ``h`` alone, so distance 1 is the same in both measures).

The selective SSM (:mod:`captioner.ssm`) has no ``h`` that later steps read: its state is ``ssm`` (each channel's
``N`` numbers) and ``conv`` (the last inputs of its convolution), so its kinds are those, flattened, and the
default measure is ``ssm``: ``∂h_{t+1}/∂h_t = exp(Δ_{t+1} A)``, a decay the input chooses, not a matrix product.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..cells import state_kinds
from ..decoder import CaptionDecoder
from ..vocab import Vocabulary


def last_word_gradients(
    model: CaptionDecoder, features: torch.Tensor, words: Sequence[int], kind: str = "h"
) -> torch.Tensor:
    """∂ log p(w_T) / ∂h_t ``(T, hidden)`` (or ∂c_t with ``kind="c"``) for the caption ``words`` (ids w_1..w_T, no
    markers) of one image's ``features`` ``(R, feature_dim)`` or ``(feature_dim,)``; row ``t``: the top layer's
    state after ``t`` words. The SSM's word is read from a step's output, not from its state, so its row ``t`` is
    the state the step reading word ``t`` starts from (one word earlier: row 0 is the state before ``<start>``)."""
    if not words:
        raise ValueError("a caption of at least one word is needed")
    parts = state_kinds(model.config.cell)  # the tensors of a decoder state, in order: (h, c), (h,), (ssm, conv)
    if kind not in parts:
        raise ValueError(f"kind must be one of {', '.join(parts)} for this decoder, not {kind!r}")
    model.eval()
    dtype = model.out.weight.dtype
    read_from_state = "h" in parts  # the word is read from the state itself (RNN, LSTM), or from a step's output
    with torch.enable_grad():
        image = model.encode_image(features.to(dtype)[None])  # a batch of one
        state, tops = model.initial_state(image), []
        if not read_from_state:
            state = tuple(s.detach().requires_grad_() for s in state)  # a leaf: the first step starts from it
            tops.append(state[parts.index(kind)])
        for t, token in enumerate([Vocabulary.start_id, *words[:-1]]):
            h, state = model.read(torch.tensor([token]), state, image, first=t == 0)
            tops.append(state[parts.index(kind)])  # (layers, 1, ...): what the later steps read
        top = state[0][-1] if read_from_state else h  # (1, hidden): what w_T is read from
        target = model.log_probs(top, image)[0, words[-1]]  # log p(w_T), from the state after w_{T-1}
        tops = tops if read_from_state else tops[:-1]  # the SSM: the states each step starts from
        grads = torch.autograd.grad(target, tops, allow_unused=True)  # c_{T-1}: unused (w_T is read from h)
    grads = [g if g is not None else torch.zeros_like(s) for g, s in zip(grads, tops)]
    return torch.stack([g[-1, 0].flatten() for g in grads])  # (T, hidden) (the SSM's: (T, its state's size))


def gradient_norms(
    model: CaptionDecoder, features: torch.Tensor, words: Sequence[int], kinds: Sequence[str] | None = None
) -> torch.Tensor:
    """‖∂ log p(w_T) / ∂s_t‖ ``(T,)`` for the state parts ``kinds`` taken together (by default the first: ``h``, or
    the SSM's ``ssm``), by step ``t`` (distance ``T - t`` from the last word)."""
    kinds = kinds or state_kinds(model.config.cell)[:1]
    squares = [last_word_gradients(model, features, words, kind).square().sum(dim=1) for kind in kinds]
    return torch.stack(squares).sum(dim=0).sqrt()
