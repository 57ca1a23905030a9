"""What the app's Look inside tab shows, computed on a :class:`captioner.pipeline.Captioner`'s decoder.

- :func:`states`: the decoder's recurrent states after each word of a caption (Karpathy, Johnson & Fei-Fei's
  "look inside"), which the heatmap and the one-cell plot draw;
- :func:`gradient_flow`: how far back the caption's last word's gradient reaches (:mod:`captioner.lecture.gradients`),
  in this decoder or in the other cell's;
- :func:`other_cell`: that other cell's shipped weights (the RNN beside an LSTM, the LSTM beside an RNN).

Each takes the pipeline's model as its first argument; none is needed to caption or to answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..decoding import trace_states
from ..pretrained import CELL_ENTRIES, Loaded, load_pretrained
from .gradients import gradient_norms

if TYPE_CHECKING:
    from ..pipeline import Caption, Captioner


def state_kinds(model: Captioner) -> tuple[str, ...]:
    """The recurrent states :func:`states` traces: ``c`` (the LSTM's cell) and ``h``, or ``h`` alone (RNN)."""
    return model.decoder.config.state_kinds


def state_size(model: Captioner) -> int:
    """The cells in each state: the decoder's hidden size."""
    return model.decoder.config.hidden_dim


def states(model: Captioner, features: torch.Tensor, caption: Caption) -> dict[str, torch.Tensor]:
    """The decoder's top-layer states ``(len(words) + 1, state_size)`` after ``<start>`` and each word of
    ``caption``, read from one image's ``features``, by kind (:func:`state_kinds`)."""
    return trace_states(model.decoder, features, caption.tokens)


def gradient_flow(
    model: Captioner, features: torch.Tensor, caption: Caption, other: Loaded | None = None
) -> torch.Tensor:
    """‖∂ log p(w_T) / ∂h_t‖ ``(T,)`` for each step t of ``caption`` read from one image's ``features``: how far
    back its last word's gradient reaches (:mod:`captioner.lecture.gradients`), in ``model``'s decoder or in
    ``other``'s (:func:`other_cell`), which reads the caption's words in its own vocabulary."""
    decoder, vocab = (model.decoder, model.vocab) if other is None else (other.model, other.vocab)
    return gradient_norms(decoder, features, [vocab.index.get(w, vocab.unk_id) for w in caption.words])


def other_cell(model: Captioner) -> Loaded | None:
    """The shipped caption weights of the other cell than ``model``'s (the RNN beside an LSTM, the LSTM beside an
    RNN: :data:`captioner.pretrained.CELL_ENTRIES`), for side-by-side plots; None when they are not here or read
    other image features than ``model``'s encoder gives."""
    other = next((name for cell, name in CELL_ENTRIES.items() if cell != model.decoder.config.cell), None)
    try:
        loaded, _ = load_pretrained(other, with_vqa=False)
    except (FileNotFoundError, ValueError):
        return None
    same = (loaded.encoder, loaded.preprocessing or model.encoder.spec.preprocessing) == (
        model.encoder.spec.name,
        model.encoder.preprocessing,
    )
    return loaded if same and not loaded.tuned else None
