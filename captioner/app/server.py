"""The captioner demo: caption a photo, look inside the LSTM, ask a question about it.

    captioner app [--host 127.0.0.1] [--port 7860] [--share false] [--weights DIR] [--precision auto]
                  [--monitoring false]

(also ``python -m captioner.app`` and ``python app.py`` in a checkout). A thin Gradio UI over
:class:`captioner.pipeline.Captioner`, offline on the CPU. The models load once at start-up; every
request goes through Gradio's queue. Named API endpoints: ``/caption``, ``/ask``, ``/chat`` (one chat turn),
``/look_inside`` and ``/cell`` (need a ``/caption`` first in the same session). The README's "The demo
app" section has a ``gradio_client`` example.

Every request is untrusted: its inputs are checked before Gradio acts on them (:class:`_CheckedBlocks`), an
upload request carries one file of 25 MB at most (:class:`_UploadLimits`), and the uploads live in a folder of
this run's own, swept of old files while it runs and removed at shutdown (:func:`_upload_cleanup`).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import gradio as gr
import matplotlib
import numpy as np
import torch
from fastapi import HTTPException
from gradio.utils import get_upload_folder
from matplotlib.figure import Figure
from PIL import Image
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse

from ..chat import LIMITS as CHAT_LIMITS
from ..chat import read_turn
from ..choices import SEPARATOR, parse_choices
from ..confidence import marked
from ..decoding import MAX_BEAM, METHODS, SLIDER_MAX, DecodeConfig
from ..images import MAX_PIXELS, BadImageError, load_image
from ..lecture.atlas import TRACKS_SHOWN, ranked
from ..pipeline import TOP_ANSWERS, Captioner
from ..pretrained import Loaded
from .lm_tab import lm_tab

PACKAGE = Path(__file__).resolve().parent.parent  # captioner/
# The example photos: installed inside the package (a wheel), else the examples/ folder of a checkout.
EXAMPLES_DIR = PACKAGE / "examples" if (PACKAGE / "examples").is_dir() else PACKAGE.parent / "examples"
CONCURRENCY = os.cpu_count() or 1  # requests computed at once, one core each (see serve)
QUEUE_SIZE = 64  # requests waiting beyond this are told the queue is full
MAX_FILE_MB = 25  # the largest upload, in MB of 2**20 bytes as Gradio counts them (it refuses larger files)
MAX_UPLOAD_FILES = 1  # files per upload request: the page and gradio_client send one
MAX_UPLOAD_BYTES = MAX_FILE_MB * MAX_UPLOAD_FILES * 2**20 + 2**16  # a request's whole body: its files and form
LIMITS = f"this app reads images of up to {MAX_PIXELS / 1e6:g} megapixels and {MAX_FILE_MB} MB"
# The app's own upload folder: every 10 minutes, delete the files older than an hour (and all of them at shutdown).
CACHE_CLEANUP = (600, 3600)
ALTERNATIVES, MAX_CELLS = 3, 64  # n-best captions shown by default; cells the heatmap may show
DECODING = DecodeConfig()  # the decoding defaults and ranges the controls show (the weights' own beam size apart)
KINDS = {"c": "c_t (cell state)", "h": "h_t (hidden state)"}
# Which cells Look inside shows: by what the weights' cell atlas says they track, or (weights without one) those
# that vary most over the caption.
SHOWS = {**TRACKS_SHOWN, "varying": "cells that vary most over this caption"}
# On a phone (the columns stacked), a smaller photo and one row of example thumbnails, so that the photo, the
# Caption button and the caption fit the first screen (390 x 844: see tests/test_browser.py).
CSS = """
@media (max-width: 640px) {
  #image { height: 260px !important; }
  #examples .gallery { flex-wrap: nowrap; overflow-x: auto; }
  #examples .gallery-item .container { width: 52px; height: 52px; }
  #alternatives table { font-size: 12px; }
  #alternatives .cell-wrap { padding: 4px 2px; }
}
.not-sure { display: inline-block; padding: 2px 10px; border-radius: 999px; background: #fde68a; color: #78350f;
            font-weight: 600; margin-right: 6px; }
"""
# The badge under a result below its weights' calibrated threshold (captioner.confidence), and what it means there.
NOT_SURE_MEANS = {"caption": "on dev photos, captions this unsure scored less than half as well as a typical one",
                  "answer": "on dev questions, answers this unsure were more often wrong than right"}
# The one answer to an image path that is not a Gradio upload or an example: the same for every such path, so
# that it tells nothing about the server's files (whether one exists, is a folder, is an image).
REFUSED = "Upload the image again: this app reads only images uploaded to it and its own examples."
SHOWN = 40  # characters of a value sent by a client that a message quotes, at most

Scored = list[tuple[str, float | None]]  # HighlightedText: (text, score or None for no colour)
Messages = list[dict[str, str]]  # a Chatbot's value: {"role": "user" or "assistant", "content": text}
MEMORY = ("Each answer comes from the photo and the question alone: the model has no memory of this "
          "conversation. One rule links the turns: a pronoun (*it*, *they*, *its*...) or a bare *how many* is read "
          "as the last thing named, by the caption or a question (\"what color is **it**?\" after \"a cat "
          "drinking...\" asks about *the cat*), and each answer shows the question as it was read.")


def _mistake(message: str) -> gr.Error:
    """A refused request: one line for the user, and one line in the server log (no traceback)."""
    print(f"captioner app: refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def _shown(value: Any) -> str:
    """A client's value as a message quotes it: a short prefix of a string or number; the type of anything else."""
    if isinstance(value, str):
        return repr(value[:SHOWN]) + ("..." if len(value) > SHOWN else "")
    return repr(value)[:SHOWN] if isinstance(value, (int, float)) else f"a {type(value).__name__}"


def _whole(name: str, value: Any, low: int = 0, high: int | None = None) -> int:
    """An API value that must be a whole number (a slider may send 3.0), or a one-line error."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise _mistake(f"{name} must be a number, not {_shown(value)}") from None
    if not number.is_integer() or number < low or high is not None and number > high:
        raise _mistake(f"{name} must be a whole number from {low}" + (f" to {high}" if high is not None else "") +
                       f", not {_shown(value)}")
    return int(number)


def _image_file(payload: Any, roots: Sequence[Path]) -> Path:
    """The regular file that an image payload names, when it lies (symbolic links resolved) under one of
    ``roots``: the app's upload folder and its examples. Any other path gets :data:`REFUSED`, decided
    from the path and ``stat`` alone, so nothing else is opened (not a FIFO, not /dev/stdin).

    Requests are checked before Gradio handles them (see :class:`_CheckedBlocks`), and again by the handlers.
    """
    if not payload or isinstance(payload, dict) and not payload.get("path"):
        raise _mistake("Upload an image first (or pick an example).")
    path = payload.get("path") if isinstance(payload, dict) else None
    try:
        real = Path(os.path.realpath(path)) if isinstance(path, str) else None
        if real and any(real.is_relative_to(root) for root in roots) and real.is_file():
            return real
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte in it
        pass
    raise _mistake(REFUSED)


def _warned(handler: Callable, cleared: Any) -> Callable:
    """``handler`` for the page's own events: a mistake becomes a one-line warning and the outputs show
    ``cleared`` (empty: what they showed no longer answers what was asked; an error would mark every output
    panel with a red "Error" badge). The API endpoints use the handlers as they are, so that API callers get
    the error."""
    @functools.wraps(handler)
    def page_handler(*args: Any) -> Any:
        try:
            return handler(*args)
        except gr.Error as e:
            gr.Warning(e.message)
            return cleared
    return page_handler


def _badge(sure: bool | None, result: str) -> str:
    """The "not sure" badge (HTML) of a caption or an answer; nothing when it is sure or the weights have no
    threshold."""
    return "" if sure is not False else f'<span class="not-sure">not sure</span> {NOT_SURE_MEANS[result]}'


def _states_figure(values: np.ndarray, labels: list[str], cells: np.ndarray, kind: str, show: str,
                   names: list[str]) -> Figure:
    """Heatmap of the chosen cells (rows, named by ``names``) over the words (columns), red positive, blue negative."""
    data = values[:, cells].T
    limit = float(np.abs(data).max()) or 1.0
    fig = Figure(figsize=(max(6.0, 0.45 * len(labels) + 2.0), 0.26 * len(cells) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(cells)), names)
    ax.set_title(f"{len(cells)} {SHOWS[show].replace('cells', f'{kind}_t cells', 1)}" +
                 (" (found over the dev captions)" if show != "varying" else ""), fontsize=10)
    fig.colorbar(image, ax=ax, label=f"{kind}_t value", shrink=0.9)
    return fig


def _cell_view(values: np.ndarray, labels: list[str], cell: int, kind: str) -> tuple[Figure, Scored]:
    """One cell's value after each word: a line plot, and the words coloured by it (Karpathy's view)."""
    series = values[:, cell]
    fig = Figure(figsize=(max(6.0, 0.45 * len(labels) + 2.0), 2.6), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.75", linewidth=0.8)
    ax.plot(series, marker="o", color="tab:red")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_ylabel(f"{kind}[{cell}]")
    ax.set_title(f"Cell {cell} of {kind}_t, word by word", fontsize=10)
    scale = float(np.abs(series).max()) or 1.0
    return fig, [(word, round(float(v) / scale, 3)) for word, v in zip(labels, series)]


def _gradient_figure(norms: dict[str, np.ndarray], labels: list[str]) -> Figure:
    """‖∂ log p(w_T)/∂h_t‖ by step, one panel per decoder side by side, each relative to its last step."""
    fig = Figure(figsize=(max(6.0, 0.6 * len(labels) * len(norms) + 2.0), 2.8), layout="constrained")
    axes = fig.subplots(1, len(norms), sharey=True, squeeze=False)[0]
    for ax, (name, values) in zip(axes, norms.items()):
        ax.bar(range(len(values)), values / (values[-1] or 1.0), color="tab:purple")
        ax.set_yscale("log")
        ax.set_xticks(range(len(values)), labels[: len(values)], rotation=45, ha="right")
        ax.set_title(name, fontsize=10)
    axes[0].set_ylabel("relative to the last step")
    fig.suptitle(f"How far back does the gradient of the last word, {labels[-1]!r}, reach? "
                 "‖∂ log p(w_T)/∂h_t‖ after each word", fontsize=10)
    return fig


def _image_roots() -> list[Path]:
    """Where images may come from: the app's upload folder and its examples."""
    return [Path(get_upload_folder()).resolve(), EXAMPLES_DIR.resolve()]


def _messages(history: Any) -> Messages:
    """A chat history from a request as plain messages, or a one-line error: a list of at most
    ``max_messages`` messages, each a user's or the assistant's text (a string, or Gradio's text parts). Checked
    before Gradio reads it too (:class:`_CheckedBlocks`): a message that names a file is refused, never read."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise _mistake(f"history must be a list of messages, not {_shown(history)}")
    if len(history) > CHAT_LIMITS.max_messages:
        raise _mistake(f"history holds {len(history)} messages; at most {CHAT_LIMITS.max_messages}: start again")
    messages = []
    for n, message in enumerate(history, 1):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # Gradio's own form: [{"type": "text", "text": ...}, ...]
            parts = [part.get("text") if isinstance(part, dict) else None for part in content]
            content = " ".join(parts) if all(isinstance(t, str) for t in parts) else None
        if not isinstance(content, str) or message.get("role") not in ("user", "assistant"):
            raise _mistake(f"history message {n} must be {{\"role\": \"user\" or \"assistant\", \"content\": text}}")
        if len(content) > CHAT_LIMITS.max_message_chars:
            raise _mistake(f"history message {n} is too long ({len(content)} characters; at most "
                           f"{CHAT_LIMITS.max_message_chars})")
        messages.append({"role": message["role"], "content": content})
    return messages


class _CheckedBlocks(gr.Blocks):
    """Blocks that check a request's inputs before Gradio acts on them, refusing in one line:
    - too few inputs (Gradio's own check logs a traceback and tells the client nothing), unless those left out
      are optional (their handler parameter defaults to None: ``/ask``'s choices);
    - an image path that is not one of the app's own files (uploads, examples). Gradio records a path inside its
      upload folder for deletion, even the folder itself, which would stop its cleanup; the handlers see it only
      afterwards;
    - a chat history that is not text messages (:func:`_messages`), which Gradio would validate and search for
      files first."""

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        if len(inputs) < len(block_fn.inputs):
            # trailing inputs whose handler parameter defaults to None are optional, as gradio_client has them
            left_out = list(inspect.signature(block_fn.fn).parameters.values())[len(inputs):len(block_fn.inputs)]
            if len(left_out) < len(block_fn.inputs) - len(inputs) or any(p.default is not None for p in left_out):
                raise _mistake(f"{block_fn.name} takes {len(block_fn.inputs)} inputs, not {len(inputs)}")
            inputs.extend([None] * len(left_out))
        roots = _image_roots()
        for block, value in zip(block_fn.inputs, inputs):
            if isinstance(block, gr.Image) and value is not None:
                _image_file(value, roots)
            if isinstance(block, gr.Chatbot):
                _messages(value)


class Demo:
    """The request handlers; their signatures and docstrings are what the API page shows."""

    def __init__(self, model: Captioner, other: Loaded | None = None):
        self.model, self.other = model, other  # other: the decoder of the other cell, for the gradient plot
        self.roots = _image_roots()

    def _image(self, payload: dict | None) -> Image.Image:
        """The uploaded file as an RGB image, through ``load_image`` (EXIF, modes, size limits)."""
        path = _image_file(payload, self.roots)
        name = " ".join(Path(str(payload.get("orig_name") or "the file")).name.split())[:SHOWN]  # shown: one line
        try:
            return load_image(path, size_hint=self.model.image_size)
        except BadImageError as e:
            raise _mistake(f"{str(e).replace(str(path), name)} ({LIMITS})") from None

    def caption(self, image: dict | None, method: str = DECODING.method, beam_size: int | None = None,
                temperature: float = DECODING.temperature, top_k: int = DECODING.top_k,
                alternatives: int = ALTERNATIVES) -> tuple[str, list[list], Scored, dict]:
        """Caption an image. Returns the caption; the alternatives (n-best), best first, each with the score
        they are ranked by (log-probability / length ** length penalty) and its log-probability; and each word
        with its probability. ``alternatives`` is capped at the beam size (greedy gives one caption);
        ``beam_size`` defaults to the weights' own."""
        if not isinstance(method, str) or method not in METHODS:
            raise _mistake(f"method must be one of {', '.join(METHODS)}, not {_shown(method)}")
        beam_size = self.model.decoding.beam_size if beam_size is None else _whole("beam_size", beam_size, 1)
        alternatives, top_k = _whole("alternatives", alternatives, 1, MAX_BEAM), _whole("top_k", top_k)
        try:
            temperature = float(temperature)
            n_best = {"greedy": 1, "beam": min(alternatives, beam_size)}.get(method, alternatives)
            cfg = self.model.decoding.override(method=method, beam_size=beam_size, n_best=n_best,
                                               temperature=temperature, top_k=top_k)
        except (TypeError, ValueError) as e:
            raise _mistake(f"Bad decoding settings: {str(e)[:200]}") from None
        features = self.model.preprocess([self._image(image)])
        captions = self.model.caption_features(features, cfg)[0]
        best = captions[0]
        table = [[rank, c.text, round(c.score, 3), round(c.log_prob, 3)] for rank, c in enumerate(captions, 1)]
        spaced = [piece for w, p in zip(best.words, best.word_probs) for piece in ((" ", None), (w, round(p, 3)))]
        return best.text, table, spaced[1:], {"features": features[0], "caption": best}

    def _trace(self, last: dict | None, kind: str) -> tuple[np.ndarray, list[str]]:
        """The LSTM states, word by word, for the session's last caption."""
        if not last:
            raise _mistake("Caption an image first: the plots show the cells for that caption.")
        if not isinstance(kind, str) or kind not in self.model.state_kinds:
            raise _mistake(f"kind must be one of {list(self.model.state_kinds)}, not {_shown(kind)}")
        states = self.model.states(last["features"], last["caption"])
        return states[kind].numpy(), ["<start>", *last["caption"].words]  # row t: after reading word t

    def look_inside(self, last: dict | None, kind: str = "c", cells: int = 16, show: str | None = None
                    ) -> tuple[Figure, int, Figure, Scored, gr.Dropdown, Figure | None]:
        """Heatmap of ``cells`` cells over the last caption, then the top one alone; the cells to pick from by what
        they track; and how far back the last word's gradient reaches, in this decoder and the other cell's.
        ``show``: ``word`` (word-selective cells, the default) or ``position`` (position-tracking), from the
        weights' cell atlas; ``varying`` (the cells that vary most over this caption) for weights without one."""
        cells = _whole("cells", cells, 1, MAX_CELLS)
        shows = self.shows
        show = shows[0] if show is None else show
        if not isinstance(show, str) or show not in shows:
            raise _mistake(f"show must be one of {', '.join(shows)}, not {_shown(show)}")
        values, labels = self._trace(last, kind)
        atlas = self.model.cells.get(kind, [])
        order = np.argsort(-values.std(axis=0)) if show == "varying" else np.array(ranked(atlas, show), dtype=int)
        if not len(order):
            raise _mistake(f"The cell atlas of these weights finds no {SHOWS[show]} in {kind}_t.")
        top, picks = order[:cells], order[:MAX_CELLS]
        choice = gr.Dropdown(choices=[(self._cell_name(kind, i), int(i)) for i in picks], value=int(top[0]))
        figure = _states_figure(values, labels, top, kind, show, [self._cell_name(kind, i) for i in top])
        return figure, int(top[0]), *_cell_view(values, labels, int(top[0]), kind), choice, self._gradients(last)

    @property
    def shows(self) -> list[str]:
        """The cell choices Look inside offers: by the cell atlas when the weights have one."""
        return ["word", "position"] if self.model.cells else ["varying"]

    def _cell_name(self, kind: str, index: int) -> str:
        """A cell as the plots and the picker name it: ``c[465] after court, bat, tennis``."""
        atlas = self.model.cells.get(kind)
        return f"{kind}[{index}]" + (f" {atlas[index]['label']}" if atlas else "")

    def _gradients(self, last: dict) -> Figure | None:
        """The gradient-flow plot of the last caption: this decoder's, and the other cell's beside it (none for a
        caption without words)."""
        if not last["caption"].words:
            return None
        cell = self.model.decoder.config.cell.upper()
        norms = {f"{cell} (these weights)": self.model.gradient_flow(last["features"], last["caption"]).numpy()}
        if self.other is not None:
            other = self.other.entry.name if self.other.entry else self.other.path.name
            norms[f"{self.other.model.config.cell.upper()} ({other})"] = self.model.gradient_flow(
                last["features"], last["caption"], self.other).numpy()
        return _gradient_figure(norms, ["<start>", *last["caption"].words])

    def cell(self, last: dict | None, kind: str = "c", index: int = 0) -> tuple[Figure, Scored]:
        """One cell's value after each word of the last caption: a plot, and the words coloured by it."""
        values, labels = self._trace(last, kind)
        return _cell_view(values, labels, _whole("cell index", index, 0, values.shape[1] - 1), kind)

    def ask(self, image: dict | None, question: str = "", choices: str | None = None) -> dict[str, float]:
        """Answer a question about an image: the top-5 answers with their probabilities; with ``choices``
        (candidates separated by ``|``, ``\\|`` for a ``|`` inside one), every choice with its probability."""
        question = self._question(question)
        if choices is not None and not isinstance(choices, str):
            raise _mistake(f"choices must be text, not {_shown(choices)}")
        try:
            offered = parse_choices(choices) if choices and choices.strip() else None
        except ValueError as e:
            raise _mistake(f"Bad choices: {e}") from None
        image = self._image(image)
        try:
            return dict(self.model.ask(image, question, top_k=TOP_ANSWERS, choices=offered))
        except ValueError as e:  # the question itself: no words, or more than the model reads
            raise _mistake(f"Cannot answer: {e}") from None

    def _question(self, question: Any) -> str:
        """A question from a request, stripped, when there is one and a VQA model to answer it."""
        if question is not None and not isinstance(question, str):
            raise _mistake(f"question must be text, not {_shown(question)}")
        question = (question or "").strip()
        if not question:
            raise _mistake("Type a question first.")
        if self.model.vqa is None:
            raise _mistake("VQA weights are missing: this app was started without a vqa/ folder in its weights.")
        return question

    def chat(self, image: dict | None, history: list | None = None, question: str = "") -> tuple[Messages, str]:
        """One turn of a chat about an image: the history (Chatbot messages; none: the caption opens it) with the
        question and its answer added, and an empty question box. The answer comes from the photo and the
        question alone, a pronoun read as the last subject named (:mod:`captioner.chat`)."""
        question = self._question(question)
        messages = _messages(history)
        image = self._image(image)
        if not messages:
            features = self.model.preprocess([image])
            messages = [{"role": "assistant", "content": self.model.caption_features(features)[0][0].text}]
        asked = [m["content"] for m in messages if m["role"] == "user"]
        read = read_turn(messages[0]["content"] if messages[0]["role"] == "assistant" else "", asked, question)
        try:
            answer, p = self.model.ask(image, read, top_k=1)[0]
        except ValueError as e:
            raise _mistake(f"Cannot answer: {e}") from None
        reply = marked(f"{answer} ({100 * p:.0f}%)", self.model.vqa.sure(p))
        if read != question:
            reply += f" (read as: {read})"
        return [*messages, {"role": "user", "content": question}, {"role": "assistant", "content": reply}], ""


def _slider(name: str, label: str, step: float, value: float, low: float | None = None, **kwargs) -> gr.Slider:
    """A decoding control over its setting's range, capped at :data:`SLIDER_MAX` (an API call may go further)."""
    limits = DecodeConfig.__dataclass_fields__[name].metadata["limits"]
    low = limits.get("low", 0) if low is None else low
    return gr.Slider(low, min(limits["high"], SLIDER_MAX[name]), value=value, step=step, label=label, **kwargs)


def _image_column() -> gr.Image:
    """The shared image, with the example photos under it."""
    image = gr.Image(label="Image", sources=["upload", "clipboard", "webcam"], type="filepath", image_mode=None,
                     height=360, elem_id="image")
    examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
    if examples:
        gr.Examples([[str(p)] for p in examples], inputs=[image], examples_per_page=len(examples),
                    label="Examples (CC BY 2.0 photos from COCO, see examples/CREDITS.md)", elem_id="examples")
    return image


def _caption_tab(model: Captioner) -> dict[str, Any]:
    """The Caption tab: the button, the caption, its word probabilities, the alternatives, the settings."""
    ui = {"button": gr.Button("Caption", variant="primary", elem_id="caption-button"),
          "text": gr.Textbox(label="Caption", interactive=False, elem_id="caption-text"),
          "sure": gr.HTML(elem_id="caption-sure"),
          "words": gr.HighlightedText(label="Word probabilities (darker: more sure)", show_inline_category=False),
          "nbest": gr.Dataframe(headers=["rank", "caption", "score", "log-prob"], interactive=False,
                                datatype=["number", "str", "number", "number"], elem_id="alternatives",
                                wrap=True, column_widths=["14%", "46%", "20%", "20%"],  # all fit a phone
                                label=f"Alternatives, ranked by score: log-prob / length ** "
                                      f"{model.decoding.length_penalty:g} (the length penalty)")}
    with gr.Accordion("Decoding settings", open=False):
        ui["method"] = gr.Radio([("beam search", "beam"), ("greedy", "greedy"), ("sample", "sample")],
                                value=DECODING.method, label="Method")
        ui["beam_size"] = _slider("beam_size", "Beam size", 1, model.decoding.beam_size)
        ui["alternatives"] = _slider("n_best", "Alternatives (beam: at most the beam size; greedy: 1)", 1,
                                     ALTERNATIVES)
        ui["temperature"] = _slider("temperature", "Temperature (sampling)", 0.1, DECODING.temperature, low=0.1,
                                    visible=False)
        ui["top_k"] = _slider("top_k", "Top-k (sampling; 0 = all words)", 1, DECODING.top_k, visible=False)
    return ui


def _inside_tab(model: Captioner, shows: list[str]) -> dict[str, Any]:
    """The Look inside tab: the heatmap of the cells chosen, one cell word by word, and the gradient flow."""
    gr.Markdown(
        f"The decoder is {'an LSTM' if model.decoder.config.cell == 'lstm' else 'a vanilla RNN'}: after each "
        "word it updates its state (`c_t`, the LSTM's memory, and the output `h_t`). Following Karpathy, Johnson "
        "& Fei-Fei, *Visualizing and Understanding Recurrent Networks*, the cells are labelled by what they track "
        "across all dev captions (the weights' cell atlas): the words after or before which they stand out, or "
        "the position in the caption. Pick a cell to follow it word by word. Below: how far back the last "
        "word's gradient reaches, in an LSTM and a vanilla RNN (the lecture's vanishing gradient).")
    size = model.state_size
    with gr.Row():
        kind = gr.Radio([(KINDS[k], k) for k in model.state_kinds], value=model.state_kinds[0], label="State")
        show = gr.Radio([(SHOWS[k], k) for k in shows], value=shows[0], label="Cells", elem_id="cell-choice")
        cells = gr.Slider(1, min(MAX_CELLS, size), value=min(16, size), step=1, label="Cells shown")
    # The plots' titles say what they show: a block label would float over the title and the first point.
    return {"kind": kind, "show": show, "cells": cells,
            "heatmap": gr.Plot(format="png", show_label=False, elem_id="heatmap"),
            "pick": gr.Dropdown([], label="Pick a cell by what it tracks", elem_id="cell-pick"),
            "index": gr.Slider(0, size - 1, value=0, step=1, label="Cell index", elem_id="cell-index"),
            "plot": gr.Plot(format="png", show_label=False, elem_id="cell-plot"),
            "words": gr.HighlightedText(label="Words coloured by this cell (red: +, purple: -)",
                                        show_inline_category=False),
            "gradients": gr.Plot(format="png", show_label=False, elem_id="gradient-flow")}


def _ask_tab(model: Captioner) -> dict[str, Any]:
    """The Ask tab: a question and its top answers."""
    if model.vqa is None:
        gr.Markdown("**VQA weights are missing**: questions cannot be answered until the app is "
                    "started with weights that include a `vqa/` folder.")
    return {"question": gr.Textbox(label="Question", placeholder="What colour is the car?", elem_id="question"),
            "choices": gr.Textbox(label=f"Choices (optional, separated by {SEPARATOR}: every choice gets a "
                                  "probability)", placeholder="red | blue | green", elem_id="choices"),
            "button": gr.Button("Ask", variant="primary"),
            "answers": gr.Label(num_top_classes=TOP_ANSWERS, label="Answers", elem_id="answers"),
            "sure": gr.HTML(elem_id="answer-sure")}


def _chat_tab() -> dict[str, Any]:
    """The Chat tab: the caption opens the conversation, then each question is answered in turn."""
    gr.Markdown(MEMORY)
    return {"history": gr.Chatbot(label="Conversation (the caption opens it; cleared when the image changes)",
                                  elem_id="chat", height=360),
            "question": gr.Textbox(label="Question", placeholder="What color is it?", elem_id="chat-question"),
            "button": gr.Button("Send", variant="primary", elem_id="chat-send")}


def _wire(demo: Demo, image: gr.Image, last: gr.State, cap: dict, inside: dict, ask: dict, chat: dict) -> None:
    """The page's events and the API endpoints. Page events turn mistakes into warnings (see ``_warned``) and are
    named page_* so that the API endpoints keep the plain names; the image arrives unprocessed (``{"path":
    ...}``) so that ``load_image``, not Gradio, reads it and explains in one line why a file is not usable."""
    cap["method"].change(lambda m: (gr.update(visible=m == "beam"), gr.update(visible=m == "sample"),
                                    gr.update(visible=m == "sample")),
                         cap["method"], [cap["beam_size"], cap["temperature"], cap["top_k"]], queue=False,
                         api_visibility="private")
    caption_in = [image, cap["method"], cap["beam_size"], cap["temperature"], cap["top_k"], cap["alternatives"]]
    caption_out = [cap["text"], cap["nbest"], cap["words"], last]
    inside_in = [last, inside["kind"], inside["cells"], inside["show"]]
    inside_out = [inside["heatmap"], inside["index"], inside["plot"], inside["words"], inside["pick"],
                  inside["gradients"]]
    cell_in, cell_out = [last, inside["kind"], inside["index"]], [inside["plot"], inside["words"]]
    # The page shows a "not sure" badge beside the caption and the answers (the API gives the values alone).
    page_caption_out, page_answers = [*caption_out, cap["sure"]], [ask["answers"], ask["sure"]]

    def caption_badged(*args: Any) -> tuple:
        *shown, last = demo.caption(*args)
        return *shown, last, _badge(last["caption"].sure, "caption")

    def ask_badged(image: dict | None, question: str, choices: str | None = None) -> tuple[dict[str, float], str]:
        answers = demo.ask(image, question, choices)
        if choices and choices.strip():  # probabilities over the user's choices: the threshold is not theirs
            return answers, ""
        return answers, _badge(demo.model.vqa.sure(max(answers.values())), "answer")

    page_caption = _warned(caption_badged, cleared=(None,) * len(page_caption_out))

    def caption_new_image(image: dict | None, *settings: Any) -> Any:
        """A new image is captioned at once (or told at once why it can't be); none: nothing to do."""
        return page_caption(image, *settings) if image else gr.skip()

    def inside_new_caption(last: dict | None, kind: str, cells: int, show: str) -> Any:
        """The Look-inside plots of a new caption; none after a mistake (already warned about)."""
        return demo.look_inside(last, kind, cells, show) if last else gr.skip()

    # A new image (an upload, an example, or none) clears what was shown for the previous one, then is captioned.
    image.change(lambda: (None,) * 12, None, [*page_caption_out, inside["heatmap"], inside["plot"], inside["words"],
                                             inside["gradients"], *page_answers, chat["history"]], queue=False,
                 api_visibility="private").then(
        caption_new_image, caption_in, page_caption_out, preprocess=False, api_name="page_new_image",
        api_visibility="private").success(inside_new_caption, inside_in, inside_out, api_visibility="private").then(
        lambda text: [{"role": "assistant", "content": text}] if text else None, cap["text"], chat["history"],
        queue=False, api_visibility="private")  # the caption opens the new image's conversation
    cap["button"].click(page_caption, caption_in, page_caption_out, preprocess=False, api_name="page_caption",
                        api_visibility="private").success(inside_new_caption, inside_in, inside_out,
                                                          api_visibility="private")
    gr.on([inside["kind"].change, inside["cells"].release, inside["show"].change],
          _warned(demo.look_inside, (None, gr.skip(), None, None, gr.skip(), None)),
          inside_in, inside_out, api_name="page_look_inside", api_visibility="private")
    # A cell picked by its label: the index follows, and the cell's plot.
    inside["pick"].input(lambda index: index, inside["pick"], inside["index"], queue=False, api_name="page_pick",
                         api_visibility="private").then(_warned(demo.cell, (None, None)), cell_in, cell_out,
                                                        api_name="page_pick_cell", api_visibility="private")
    # "input": a drag, or a number typed in the slider's box (its Enter and "release" send nothing new).
    inside["index"].input(_warned(demo.cell, (None, None)), cell_in, cell_out, trigger_mode="always_last",
                          api_name="page_cell", api_visibility="private")
    ask_in = [image, ask["question"], ask["choices"]]
    chat_in, chat_out = [image, chat["history"], chat["question"]], [chat["history"], chat["question"]]
    gr.on([ask["button"].click, ask["question"].submit, ask["choices"].submit], _warned(ask_badged, (None, None)),
          ask_in, page_answers, preprocess=False, api_name="page_ask", api_visibility="private")
    gr.on([chat["button"].click, chat["question"].submit], _warned(demo.chat, (gr.skip(), gr.skip())), chat_in,
          chat_out, preprocess=False, api_name="page_chat", api_visibility="private")
    # The API endpoints: the same handlers, whose mistakes are errors, wired to a button that is never shown.
    # Unprocessed inputs: the handlers check every value themselves, in one line, with no traceback logged.
    api = gr.Button(visible=False)
    api.click(demo.caption, caption_in, caption_out, api_name="caption", preprocess=False)
    api.click(demo.look_inside, inside_in, inside_out, api_name="look_inside", preprocess=False)
    api.click(demo.cell, cell_in, cell_out, api_name="cell", preprocess=False)
    api.click(demo.ask, ask_in, ask["answers"], api_name="ask", preprocess=False)
    api.click(demo.chat, chat_in, chat_out, api_name="chat", preprocess=False)


def build_ui(model: Captioner, other: Loaded | None = None) -> gr.Blocks:
    """The page: one shared image on the left, the Caption / Look inside / Ask / Chat tabs on the right. ``other``:
    the other cell's decoder, beside this one in the gradient plot."""
    demo = Demo(model, other)
    with _CheckedBlocks(title="captioner", analytics_enabled=False) as ui:
        gr.Markdown("# captioner\nDescribe a photo in words, see inside the LSTM that writes them, "
                    "and ask questions about the photo. Everything runs offline on this computer's CPU.")
        last = gr.State(None)  # this session's last caption and its image features, for "Look inside"
        with gr.Row():
            with gr.Column(scale=2):
                image = _image_column()
            with gr.Column(scale=3), gr.Tabs():
                with gr.Tab("Caption", id="caption"):
                    caption = _caption_tab(model)
                with gr.Tab("Look inside", id="inside"):
                    inside = _inside_tab(model, demo.shows)
                with gr.Tab("Ask", id="ask"):
                    ask = _ask_tab(model)
                with gr.Tab("Chat", id="chat"):
                    chat = _chat_tab()
                with gr.Tab("Language model", id="lm"):
                    lm_tab()
        _wire(demo, image, last, caption, inside, ask, chat)
    ui.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return ui


class _UploadLimits:
    """ASGI middleware: a multipart request (an upload) may carry at most :data:`MAX_UPLOAD_FILES` files and
    :data:`MAX_UPLOAD_BYTES` in all, where Gradio limits only each file's size (one request could store 1000
    files). Over either limit the request is refused with 413: at once when its declared length is over, else
    as soon as its body crosses a limit, before Gradio reads further (what it had written is swept). (FastAPI's
    own ``max_body_size`` is recent: Gradio 6 allows FastAPI versions without it.)"""

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else {}
        kind, options = parse_options_header(headers.get("content-type", ""))
        if kind != b"multipart/form-data":
            return await self.app(scope, receive, send)
        too_large = f"an upload request may carry at most {MAX_UPLOAD_FILES} file(s), {MAX_FILE_MB} MB in all"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            print(f"captioner app: refused: {too_large}", file=sys.stderr, flush=True)
            return await PlainTextResponse(too_large, status_code=413)(scope, receive, send)
        # Parts are delimited by "--" + the boundary, which by the format's definition never occurs inside a
        # part: n files make n + 1 delimiters (the last one closes the body).
        delimiter, tail, seen, delimiters = b"--" + options.get(b"boundary", b""), b"", 0, 0

        async def counted() -> dict:
            nonlocal tail, seen, delimiters
            message = await receive()
            body = message.get("body", b"")
            window, seen = tail + body, seen + len(body)
            delimiters, tail = delimiters + window.count(delimiter), window[-(len(delimiter) - 1):]
            if seen > MAX_UPLOAD_BYTES or delimiters > MAX_UPLOAD_FILES + 1:
                print(f"captioner app: refused: {too_large}", file=sys.stderr, flush=True)
                raise HTTPException(413, too_large)
            return message

        try:
            await self.app(scope, counted, send)
        except ClientDisconnect:  # an abandoned upload: what it stored so far is swept like any old upload
            print("captioner app: an upload was abandoned", file=sys.stderr, flush=True)


def _sweep(folder: Path, age: float) -> None:
    """Delete what lies under ``folder`` unchanged for over ``age`` seconds (by ctime, as Gradio ages its cache):
    files, then folders left empty. Never raises: one odd entry must not stop the cleanup."""
    now = time.time()
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in [*files, *dirs]:
            path = os.path.join(root, name)
            try:
                if now - os.lstat(path).st_ctime > age:
                    (os.rmdir if name in dirs else os.unlink)(path)
            except OSError:  # gone already, a folder not empty yet
                pass


def _upload_cleanup(folder: Path, every: float, age: float) -> Callable:
    """The app's lifespan: sweep ``folder`` every ``every`` seconds while it runs, and remove it at shutdown.

    Gradio's own ``delete_cache`` deletes only the files it recorded: not what an abandoned upload left, and one
    recorded folder stops it (IsADirectoryError, then "Application shutdown failed")."""
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async def sweep_forever() -> None:
            while True:
                await asyncio.sleep(every)
                await asyncio.to_thread(_sweep, folder, age)

        task = asyncio.create_task(sweep_forever())
        try:
            yield
        finally:
            task.cancel()
            shutil.rmtree(folder, ignore_errors=True)
    return lifespan


def serve(weights: str | None = None, precision: str = "auto", host: str = "127.0.0.1", port: int = 7860,
          share: bool = False, monitoring: bool = False) -> int:
    """Load the models and serve the app until interrupted (Ctrl-C or SIGTERM); 2 when the weights can't load.
    ``monitoring`` turns on Gradio's request statistics (``/monitoring``), which are off by default."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage pings
    matplotlib.use("Agg")  # plots are rendered to PNG in worker threads; never open a window
    try:
        model = Captioner.from_pretrained(weights, precision=precision)
    except (FileNotFoundError, ValueError) as e:
        print(f"captioner app: error: {e}", file=sys.stderr)
        return 2
    print(f"captioner app: precision {model.runtime}", flush=True)
    # One thread per request: CONCURRENCY requests then share the cores. Several threads per request
    # oversubscribe them, and on a busy CPU a request can wait seconds for its slowest thread.
    torch.set_num_threads(1)
    model.caption_images([Image.new("RGB", (64, 64))])  # warm-up: the first visitor skips lazy initialisation
    # This run's own upload folder (private, inside GRADIO_TEMP_DIR when set), so that the cleanup deletes
    # nothing of another app's; the examples are served where they are, not copied into it.
    parent = os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    uploads = Path(tempfile.mkdtemp(prefix="captioner-app-", dir=parent))
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    gr.set_static_paths([EXAMPLES_DIR])
    # SIGTERM shuts down as Ctrl-C does, so that the uploads are deleted on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    ui = build_ui(model, model.other_cell())
    # quiet: Gradio's start-up lines would tell users to set share=True in launch(); the app's own say --share true.
    ui.launch(server_name=host, server_port=port, share=share, max_file_size=f"{MAX_FILE_MB}mb",
              allowed_paths=[str(EXAMPLES_DIR)], enable_monitoring=monitoring, css=CSS, quiet=True,
              prevent_thread_lock=True, app_kwargs={"lifespan": _upload_cleanup(uploads, *CACHE_CLEANUP),
                                                    "middleware": [Middleware(_UploadLimits)]})
    print(f"captioner app: running on {ui.local_url} (Ctrl-C to stop)", flush=True)
    if not share:  # Gradio prints the public link, or why it could not make one
        print("captioner app: for a public gradio.live link too, start it with --share true", flush=True)
    ui.block_thread()
    return 0
