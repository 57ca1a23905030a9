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
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..decoder import CaptionDecoder
from ..vocab import Vocabulary

STATE_PARTS = ("h", "c")  # the tensors of a decoder state, in order (CaptionDecoder.initial_state: (h,) for the RNN)


def last_word_gradients(model: CaptionDecoder, features: torch.Tensor, words: Sequence[int],
                        kind: str = "h") -> torch.Tensor:
    """∂ log p(w_T) / ∂h_t ``(T, hidden)`` (or ∂c_t with ``kind="c"``) for the caption ``words`` (ids w_1..w_T, no
    markers) of one image's ``features`` ``(R, feature_dim)`` or ``(feature_dim,)``; row ``t``: the top layer's
    state after ``t`` words."""
    if not words:
        raise ValueError("a caption of at least one word is needed")
    if kind not in model.config.state_kinds:
        raise ValueError(f"kind must be one of {', '.join(model.config.state_kinds)} for this decoder, not {kind!r}")
    model.eval()
    dtype = model.out.weight.dtype
    with torch.enable_grad():
        image = model.encode_image(features.to(dtype)[None])  # a batch of one
        state, tops = model.initial_state(image), []
        for t, token in enumerate([Vocabulary.start_id, *words[:-1]]):
            _, state = model.step(torch.tensor([token]), state, image, first=t == 0)
            tops.append(state[STATE_PARTS.index(kind)])  # (layers, 1, hidden): what the later steps read
        target = model.log_probs(state[0][-1], image)[0, words[-1]]  # log p(w_T), from the state after w_{T-1}
        grads = torch.autograd.grad(target, tops, allow_unused=True)  # c_{T-1}: unused (w_T is read from h)
    grads = [g if g is not None else torch.zeros_like(s) for g, s in zip(grads, tops)]
    return torch.stack([g[-1, 0] for g in grads])  # (T, hidden)


def gradient_norms(model: CaptionDecoder, features: torch.Tensor, words: Sequence[int],
                   kinds: Sequence[str] = ("h",)) -> torch.Tensor:
    """‖∂ log p(w_T) / ∂s_t‖ ``(T,)`` for the state parts ``kinds`` taken together (``h`` alone by default), by step
    ``t`` (distance ``T - t`` from the last word)."""
    squares = [last_word_gradients(model, features, words, kind).square().sum(dim=1) for kind in kinds]
    return torch.stack(squares).sum(dim=0).sqrt()
