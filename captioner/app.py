"""The captioner demo: caption a photo, look inside the LSTM, ask a question about it.

    captioner app [--host 127.0.0.1] [--port 7860] [--share false] [--weights DIR] [--precision auto]

(also ``python -m captioner.app`` and ``python app.py`` in a checkout). A thin Gradio UI over
:class:`captioner.pipeline.Captioner`, offline on the CPU. The models load once at start-up; every
request goes through Gradio's queue. Named API endpoints: ``/caption``, ``/ask`` (stable),
``/look_inside`` and ``/cell`` (need a ``/caption`` first in the same session). The README's "The demo
app" section has a ``gradio_client`` example.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import matplotlib
import numpy as np
import torch
from gradio.utils import get_upload_folder
from matplotlib.figure import Figure
from PIL import Image

from .decoding import MAX_BEAM, METHODS, SLIDER_MAX, DecodeConfig
from .images import BadImageError, load_image
from .pipeline import TOP_ANSWERS, Captioner

PACKAGE = Path(__file__).resolve().parent
# The example photos: installed inside the package (a wheel), else the examples/ folder of a checkout.
EXAMPLES_DIR = PACKAGE / "examples" if (PACKAGE / "examples").is_dir() else PACKAGE.parent / "examples"
CONCURRENCY = os.cpu_count() or 1  # requests computed at once, one core each (see serve)
QUEUE_SIZE = 64  # requests waiting beyond this are told the queue is full
MAX_FILE_SIZE = "25mb"
# Gradio's upload cache: every 10 minutes, delete the uploads older than an hour (and all of them at shutdown).
CACHE_CLEANUP = (600, 3600)
ALTERNATIVES, MAX_CELLS = 3, 64  # n-best captions shown by default; cells the heatmap may show
DECODING = DecodeConfig()  # the decoding defaults and ranges the controls show (the weights' own beam size apart)
KINDS = {"c": "c_t (cell state)", "h": "h_t (hidden state)"}
# The one answer to an image path that is not a Gradio upload or an example: the same for every such path, so
# that it tells nothing about the server's files (whether one exists, is a folder, is an image).
REFUSED = "Upload the image again: this app reads only images uploaded to it and its own examples."

Scored = list[tuple[str, float | None]]  # HighlightedText: (text, score or None for no colour)


def _mistake(message: str) -> gr.Error:
    """A user's mistake: one line for them, and no traceback in the server log."""
    return gr.Error(message, print_exception=False)


def _whole(name: str, value: Any, low: int = 0, high: int | None = None) -> int:
    """An API value that must be a whole number (a slider may send 3.0), or a one-line error."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise _mistake(f"{name} must be a number, not {str(value)[:40]!r}") from None
    if not number.is_integer() or number < low or high is not None and number > high:
        raise _mistake(f"{name} must be a whole number from {low}" + (f" to {high}" if high is not None else "") +
                       f", not {str(value)[:40]!r}")
    return int(number)


def _allowed_file(payload: Any, roots: Sequence[Path]) -> Path:
    """The regular file that an image payload names, when it lies (symbolic links resolved) under one of
    ``roots``: Gradio's upload folder and the app's examples. Any other path gets :data:`REFUSED`, decided
    from the path and ``stat`` alone, so nothing else is opened (not a FIFO, not /dev/stdin).

    This check is needed because an API call may send ``{"path": ...}`` without Gradio's ``meta`` marker,
    which skips Gradio's own check of the path.
    """
    path = payload.get("path") if isinstance(payload, dict) else None
    try:
        real = Path(os.path.realpath(path)) if isinstance(path, str) else None
        if real and any(real.is_relative_to(root) for root in roots) and real.is_file():
            return real
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte in it
        pass
    raise _mistake(REFUSED)


def _warned(handler: Callable) -> Callable:
    """``handler`` for the page's own events: a mistake becomes a one-line warning and the outputs keep what they
    showed (an error would mark every output panel with a red "Error" badge). The API endpoints use the
    handlers as they are, so that API callers get the error."""
    @functools.wraps(handler)
    def page_handler(*args: Any) -> Any:
        try:
            return handler(*args)
        except gr.Error as e:
            gr.Warning(e.message)
            return gr.skip()
    return page_handler


def _states_figure(values: np.ndarray, labels: list[str], cells: np.ndarray, kind: str) -> Figure:
    """Heatmap of the chosen cells (rows) over the words (columns), red positive, blue negative."""
    data = values[:, cells].T
    limit = float(np.abs(data).max()) or 1.0
    fig = Figure(figsize=(max(6.0, 0.45 * len(labels) + 2.0), 0.26 * len(cells) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(cells)), [f"{kind}[{i}]" for i in cells])
    ax.set_title(f"The {len(cells)} {kind}_t cells that vary most over this caption", fontsize=10)
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


class Demo:
    """The request handlers; their signatures and docstrings are what the API page shows."""

    def __init__(self, model: Captioner):
        self.model = model
        self.roots = [Path(get_upload_folder()).resolve(), EXAMPLES_DIR.resolve()]  # where images may come from

    def _image(self, payload: dict | None) -> Image.Image:
        """The uploaded file as an RGB image, through ``load_image`` (EXIF, modes, size limits)."""
        if not payload or isinstance(payload, dict) and not payload.get("path"):
            raise _mistake("Upload an image first (or pick an example).")
        path = _allowed_file(payload, self.roots)
        name = " ".join(Path(str(payload.get("orig_name") or "the file")).name.split())  # shown, so one line
        try:
            return load_image(path, size_hint=self.model.image_size)
        except BadImageError as e:
            raise _mistake(str(e).replace(str(path), name)) from None

    def caption(self, image: dict | None, method: str = DECODING.method, beam_size: int | None = None,
                temperature: float = DECODING.temperature, top_k: int = DECODING.top_k,
                alternatives: int = ALTERNATIVES) -> tuple[str, list[list], Scored, dict]:
        """Caption an image. Returns the caption; the alternatives (n-best), best first, each with the score
        they are ranked by (log-probability / length ** length penalty) and its log-probability; and each word
        with its probability. ``alternatives`` is capped at the beam size (greedy gives one caption);
        ``beam_size`` defaults to the weights' own."""
        if method not in METHODS:
            raise _mistake(f"method must be one of {', '.join(METHODS)}, not {str(method)[:40]!r}")
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
        if kind not in self.model.state_kinds:
            raise _mistake(f"kind must be one of {list(self.model.state_kinds)}, not {str(kind)[:40]!r}")
        states = self.model.states(last["features"], last["caption"])
        return states[kind].numpy(), ["<start>", *last["caption"].words]  # row t: after reading word t

    def look_inside(self, last: dict | None, kind: str = "c", cells: int = 16) -> tuple[Figure, int, Figure, Scored]:
        """Heatmap of the ``cells`` LSTM cells that vary most over the last caption, then the top one alone."""
        cells = _whole("cells", cells, 1, MAX_CELLS)
        values, labels = self._trace(last, kind)
        top = np.argsort(-values.std(axis=0))[:cells]
        return _states_figure(values, labels, top, kind), int(top[0]), *_cell_view(values, labels, int(top[0]), kind)

    def cell(self, last: dict | None, kind: str = "c", index: int = 0) -> tuple[Figure, Scored]:
        """One cell's value after each word of the last caption: a plot, and the words coloured by it."""
        values, labels = self._trace(last, kind)
        return _cell_view(values, labels, _whole("cell index", index, 0, values.shape[1] - 1), kind)

    def ask(self, image: dict | None, question: str = "") -> dict[str, float]:
        """Answer a question about an image: the top-5 answers with their probabilities."""
        question = str(question or "").strip()
        if not question:
            raise _mistake("Type a question first.")
        if self.model.vqa is None:
            raise _mistake("VQA weights are missing: this app was started without a vqa/ folder in its weights.")
        image = self._image(image)
        try:
            return dict(self.model.ask(image, question, top_k=TOP_ANSWERS))
        except ValueError as e:  # the question itself: no words, or more than the model reads
            raise _mistake(f"Cannot answer: {e}") from None


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
                    label="Examples (CC BY 2.0 photos from COCO, see examples/CREDITS.md)")
    return image


def _caption_tab(model: Captioner) -> dict[str, Any]:
    """The Caption tab: the button, the caption, its word probabilities, the alternatives, the settings."""
    ui = {"button": gr.Button("Caption", variant="primary"),
          "text": gr.Textbox(label="Caption", interactive=False, elem_id="caption-text"),
          "words": gr.HighlightedText(label="Word probabilities (darker: more sure)", show_inline_category=False),
          "nbest": gr.Dataframe(headers=["rank", "caption", "score", "log-prob"], interactive=False,
                                datatype=["number", "str", "number", "number"], elem_id="alternatives",
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


def _inside_tab(model: Captioner) -> dict[str, Any]:
    """The Look inside tab: the heatmap of the most varying cells, and one cell word by word."""
    gr.Markdown(
        "The decoder is an LSTM: after each word it updates a memory vector `c_t` and an output "
        "`h_t`. Following Karpathy, Johnson & Fei-Fei, *Visualizing and Understanding Recurrent "
        "Networks* (searching for interpretable cells), the heatmap shows the cells that change "
        "most over the caption; pick a cell below to follow it word by word.")
    size = model.state_size
    with gr.Row():
        kind = gr.Radio([(KINDS[k], k) for k in model.state_kinds], value=model.state_kinds[0], label="State")
        cells = gr.Slider(1, min(MAX_CELLS, size), value=min(16, size), step=1, label="Cells shown")
    return {"kind": kind, "cells": cells, "heatmap": gr.Plot(label="Most varying cells", format="png",
                                                             elem_id="heatmap"),
            "index": gr.Slider(0, size - 1, value=0, step=1, label="Cell index", elem_id="cell-index"),
            "plot": gr.Plot(label="One cell over the caption", format="png", elem_id="cell-plot"),
            "words": gr.HighlightedText(label="Words coloured by this cell (red: +, purple: -)",
                                        show_inline_category=False)}


def _ask_tab(model: Captioner) -> dict[str, Any]:
    """The Ask tab: a question and its top answers."""
    if model.vqa is None:
        gr.Markdown("**VQA weights are missing**: questions cannot be answered until the app is "
                    "started with weights that include a `vqa/` folder.")
    return {"question": gr.Textbox(label="Question", placeholder="What colour is the car?", elem_id="question"),
            "button": gr.Button("Ask", variant="primary"),
            "answers": gr.Label(num_top_classes=TOP_ANSWERS, label="Answers", elem_id="answers")}


def _wire(demo: Demo, image: gr.Image, last: gr.State, cap: dict, inside: dict, ask: dict) -> None:
    """The page's events and the API endpoints. Page events turn mistakes into warnings (see ``_warned``) and are
    named page_* so that the API endpoints keep the plain names; the image arrives unprocessed (``{"path":
    ...}``) so that ``load_image``, not Gradio, reads it and explains in one line why a file is not usable."""
    cap["method"].change(lambda m: (gr.update(visible=m == "beam"), gr.update(visible=m == "sample"),
                                    gr.update(visible=m == "sample")),
                         cap["method"], [cap["beam_size"], cap["temperature"], cap["top_k"]], queue=False,
                         api_visibility="private")
    caption_in = [image, cap["method"], cap["beam_size"], cap["temperature"], cap["top_k"], cap["alternatives"]]
    caption_out = [cap["text"], cap["nbest"], cap["words"], last]
    inside_in = [last, inside["kind"], inside["cells"]]
    inside_out = [inside["heatmap"], inside["index"], inside["plot"], inside["words"]]
    cell_in, cell_out = [last, inside["kind"], inside["index"]], [inside["plot"], inside["words"]]
    # A new image (an upload, an example, or none) clears what was shown for the previous one.
    image.change(lambda: (None,) * 8, None, [*caption_out, inside["heatmap"], inside["plot"], inside["words"],
                                            ask["answers"]], queue=False, api_visibility="private")

    def inside_new_caption(last: dict | None, kind: str, cells: int) -> Any:
        """The Look-inside plots of a new caption; none after a mistake (already warned about)."""
        return demo.look_inside(last, kind, cells) if last else gr.skip()

    cap["button"].click(_warned(demo.caption), caption_in, caption_out, preprocess=False, api_name="page_caption",
                        api_visibility="private").success(inside_new_caption, inside_in, inside_out,
                                                          api_visibility="private")
    gr.on([inside["kind"].change, inside["cells"].release], _warned(demo.look_inside), inside_in, inside_out,
          api_name="page_look_inside", api_visibility="private")
    # "input": a drag, or a number typed in the slider's box (its Enter and "release" send nothing new).
    inside["index"].input(_warned(demo.cell), cell_in, cell_out, trigger_mode="always_last", api_name="page_cell",
                          api_visibility="private")
    gr.on([ask["button"].click, ask["question"].submit], _warned(demo.ask), [image, ask["question"]],
          ask["answers"], preprocess=False, api_name="page_ask", api_visibility="private")
    # The API endpoints: the same handlers, whose mistakes are errors, wired to a button that is never shown.
    # Unprocessed inputs: the handlers check every value themselves, in one line, with no traceback logged.
    api = gr.Button(visible=False)
    api.click(demo.caption, caption_in, caption_out, api_name="caption", preprocess=False)
    api.click(demo.look_inside, inside_in, inside_out, api_name="look_inside", preprocess=False)
    api.click(demo.cell, cell_in, cell_out, api_name="cell", preprocess=False)
    api.click(demo.ask, [image, ask["question"]], ask["answers"], api_name="ask", preprocess=False)


def build_ui(model: Captioner) -> gr.Blocks:
    """The page: one shared image on the left, the Caption / Look inside / Ask tabs on the right."""
    with gr.Blocks(title="captioner", delete_cache=CACHE_CLEANUP, analytics_enabled=False) as ui:
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
                    inside = _inside_tab(model)
                with gr.Tab("Ask", id="ask"):
                    ask = _ask_tab(model)
        _wire(Demo(model), image, last, caption, inside, ask)
    ui.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return ui


def serve(weights: str | None = None, precision: str = "auto", host: str = "127.0.0.1", port: int = 7860,
          share: bool = False) -> int:
    """Load the models and serve the app until interrupted (Ctrl-C or SIGTERM); 2 when the weights can't load."""
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
    # SIGTERM shuts down as Ctrl-C does, so that Gradio deletes this run's uploads (delete_cache) on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    build_ui(model).launch(server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE,
                           allowed_paths=[str(EXAMPLES_DIR)])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m captioner.app [OPTIONS]``: the same as ``captioner app [OPTIONS]``."""
    from .cli import main as cli_main

    return cli_main(["app", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
