"""The app's "Language model" tab: sample from a character model at a temperature, streamed, the text coloured
character by character by one interpretable cell picked by its label (quote, column, depth, ...), as in Karpathy,
Johnson & Fei-Fei's figures. Hooked into the page by :func:`captioner.app.page.build_ui` (``lm_tab()``).
"""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr
import numpy as np
import torch

from ..charlm import SampleConfig, sample
from ..lecture.charcells import DEFINITIONS, cell_values
from ..lecture.charviews import CellRef, colour_html
from ..pretrained import DEFAULT, LoadedLM, list_weights, load_lm

APP_MAX_LENGTH = 2000  # characters one request may draw (the CLI and Python allow more)
EVERY = 8  # characters drawn between two updates of the page
_LOADED: dict[str, LoadedLM] = {}


def _model(name: str) -> LoadedLM:
    """A character model by entry name, loaded once per process."""
    if name not in [w.name for w in list_weights("lm")]:
        raise gr.Error(f"no character model {str(name)[:40]!r}")
    if name not in _LOADED:
        _LOADED[name] = load_lm(name)
    return _LOADED[name]


def _choice(lm: LoadedLM, signal: str) -> tuple[CellRef, str]:
    ref = CellRef.best_for(lm.atlas, signal)
    r = lm.atlas["signals"][signal]["best"][0]["r"]
    return (
        ref,
        f"Coloured by {ref.words()}, the best **{signal}** cell ({DEFINITIONS.get(signal, signal)}; "
        f"r {r:+.2f} on held-out text): red high, blue low.",
    )


def lm_sample(
    weights: str, prime: str, length: float, temperature: float, seed: float | None, signal: str
) -> Iterator[tuple[str, str]]:
    """Draw ``length`` characters after ``prime``, streamed: yields (coloured HTML, a line on the cell)."""
    lm = _model(weights)
    try:
        cfg = SampleConfig(
            prime=prime or "\n",
            length=int(length),
            temperature=float(temperature),
            seed=None if seed in (None, "") else int(seed),
        )
        if cfg.length > APP_MAX_LENGTH:
            raise ValueError(f"length must be at most {APP_MAX_LENGTH} here")
        ref, words = _choice(lm, signal) if lm.atlas else (None, "These weights have no cell atlas.")
    except (TypeError, ValueError) as e:
        raise gr.Error(str(e)) from None
    state, text, values = lm.model.zero_state(1), "", []
    kinds = lm.model.cell.state_kinds
    for i, piece in enumerate(sample(lm.model, lm.vocab, cfg)):
        with torch.inference_mode():
            for ch in piece:  # the same recurrence read along, to see the cell after each character
                _, state = lm.model.step(lm.vocab.encode(ch), state)
                part = state[kinds.index(ref.kind)][ref.layer] if ref else None  # (1, ...)
                values.append(float(cell_values(part)[0, ref.cell]) if ref else 0.0)
        text += piece
        if i % EVERY == 0 or i == cfg.length:
            yield colour_html(text, np.array(values)), words


def lm_tab() -> dict[str, Any]:
    """The tab's controls, wired to :func:`lm_sample` (also the API's ``/lm_sample``)."""
    names = [w.name for w in list_weights("lm") if (w.path / "config.json").exists()]
    if not names:
        gr.Markdown("No character-model weights are installed.")
        return {}
    gr.Markdown(
        "A character-level language model writes text one character at a time; pick a cell by what it "
        "tracks to see it switch on and off as the text goes (see docs/rnn.md)."
    )
    weights = gr.Dropdown(names, value=DEFAULT["lm"] if DEFAULT["lm"] in names else names[0], label="Model")
    prime = gr.Textbox("ROMEO:", label="Start from (prime)", max_lines=3)
    with gr.Row():
        length = gr.Slider(20, APP_MAX_LENGTH, value=400, step=10, label="Characters")
        temperature = gr.Slider(0.1, 2.0, value=0.8, step=0.05, label="Temperature")
    with gr.Row():
        seed = gr.Number(None, precision=0, label="Seed (empty: a fresh draw)", minimum=0)
        signal = gr.Dropdown(list(DEFINITIONS), value="quote", label="Colour by the cell that tracks")
    button = gr.Button("Sample", variant="primary")
    about = gr.Markdown()
    html = gr.HTML()
    button.click(lm_sample, [weights, prime, length, temperature, seed, signal], [html, about], api_name="lm_sample")
    return {"weights": weights, "html": html}
