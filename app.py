"""The captioner demo: caption a photo, look inside the LSTM, ask a question about it.

    python app.py [--host 127.0.0.1] [--port 7860] [--share false] [--weights DIR] [--precision auto]

A thin Gradio UI over :class:`captioner.pipeline.Captioner`, offline on the CPU. The models
load once at start-up; every request goes through Gradio's queue. Named API endpoints:
``/caption``, ``/ask`` (stable), ``/look_inside`` and ``/cell`` (need a ``/caption`` first in the
same session). The README's "The demo app" section has a ``gradio_client`` example.
"""
from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage pings (read at import)

import gradio as gr  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from captioner.images import BadImageError, load_image  # noqa: E402
from captioner.decoding import METHODS, trace_states  # noqa: E402
from captioner.pipeline import Captioner, decode_config  # noqa: E402
from captioner.precision import PRECISION_HELP, PRECISIONS  # noqa: E402

matplotlib.use("Agg")  # plots are rendered to PNG in worker threads; never open a window

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
CONCURRENCY = os.cpu_count() or 1  # requests computed at once, one core each (see main)
QUEUE_SIZE = 64  # requests waiting beyond this are told the queue is full
MAX_FILE_SIZE = "25mb"
# Gradio's upload cache: every 10 minutes, delete the uploads older than an hour (and all of them at shutdown).
CACHE_CLEANUP = (600, 3600)
TOP_ANSWERS = 5
# Control ranges, shared by the sliders and the checks on API calls (which bypass the sliders).
LIMITS = {"beam_size": (1, 10), "temperature": (0.1, 2.0), "top_k": (0, 100), "alternatives": (1, 10), "cells": (1, 64)}
DEFAULTS = {"method": "beam", "temperature": 1.0, "top_k": 0, "alternatives": 3}


class _WeightsOwn:
    """A default that is the weights' own decoding setting (the beam size): see ``Captioner.decoding``."""

    def __repr__(self) -> str:
        return "the weights' own"


WEIGHTS_OWN = _WeightsOwn()
KINDS = {"c": "c_t (cell state)", "h": "h_t (hidden state)"}
# The one answer to an image path that is not a Gradio upload or an example: the same for every such path, so
# that it tells nothing about the server's files (whether one exists, is a folder, is an image).
REFUSED = "Upload the image again: this app reads only images uploaded to it and its own examples."

Scored = list[tuple[str, float | None]]  # HighlightedText: (text, score or None for no colour)


def _mistake(message: str) -> gr.Error:
    """A user's mistake: one line for them, and no traceback in the server log."""
    return gr.Error(message, print_exception=False)


def _checked(name: str, value: Any, kind: type = float, limits: tuple[float, float] | None = None) -> Any:
    """An API value as ``kind`` within ``limits`` (default ``LIMITS[name]``), or a one-line error."""
    lo, hi = limits or LIMITS[name]
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise _mistake(f"{name} must be a number, not {value!r}") from None
    if not lo <= number <= hi:
        raise _mistake(f"{name} must be between {lo} and {hi}, not {value!r}")
    return number


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
        self.image_size = model.encoder.preprocessing.image_size
        self.kinds = ["c", "h"] if model.decoder.config.cell == "lstm" else ["h"]
        self.roots = [Path(get_upload_folder()).resolve(), EXAMPLES_DIR.resolve()]  # where images may come from

    def _image(self, payload: dict | None) -> Image.Image:
        """The uploaded file as an RGB image, through ``load_image`` (EXIF, modes, size limits)."""
        if not payload or isinstance(payload, dict) and not payload.get("path"):
            raise _mistake("Upload an image first (or pick an example).")
        path = _allowed_file(payload, self.roots)
        name = " ".join(Path(str(payload.get("orig_name") or "the file")).name.split())  # shown, so one line
        try:
            return load_image(path, size_hint=self.image_size)
        except BadImageError as e:
            raise _mistake(str(e).replace(str(path), name)) from None

    def caption(self, image: dict | None, method: str = DEFAULTS["method"], beam_size: int = WEIGHTS_OWN,
                temperature: float = DEFAULTS["temperature"], top_k: int = DEFAULTS["top_k"],
                alternatives: int = DEFAULTS["alternatives"]) -> tuple[str, list[list], Scored, dict]:
        """Caption an image. Returns the caption; the alternatives (n-best), best first, each with the score
        they are ranked by (log-probability / length ** length penalty) and its log-probability; and each word
        with its probability. ``alternatives`` is capped at the beam size (greedy gives one caption);
        ``beam_size`` defaults to the weights' own."""
        if method not in METHODS:
            raise _mistake(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        beam_size = self.model.decoding.beam_size if beam_size is WEIGHTS_OWN else beam_size
        beam_size, alternatives = _checked("beam_size", beam_size, int), _checked("alternatives", alternatives, int)
        temperature, top_k = _checked("temperature", temperature), _checked("top_k", top_k, int)
        n_best = {"greedy": 1, "beam": min(alternatives, beam_size)}.get(method, alternatives)
        try:
            cfg = decode_config(self.model.decoding, method=method, beam_size=beam_size, n_best=n_best,
                                temperature=temperature, top_k=top_k)
        except ValueError as e:
            raise _mistake(f"Bad decoding settings: {e}") from None
        features = self.model.features([self._image(image)])
        captions = self.model.caption_features(features, cfg)[0]
        best = captions[0]
        table = [[rank, c.text, round(c.score, 3), round(c.log_prob, 3)] for rank, c in enumerate(captions, 1)]
        spaced = [piece for w, p in zip(best.words, best.word_probs) for piece in ((" ", None), (w, round(p, 3)))]
        return best.text, table, spaced[1:], {"features": features[0], "caption": best}

    def _trace(self, last: dict | None, kind: str) -> tuple[np.ndarray, list[str]]:
        """The LSTM states, word by word, for the session's last caption."""
        if not last:
            raise _mistake("Caption an image first: the plots show the cells for that caption.")
        if kind not in self.kinds:
            raise _mistake(f"kind must be one of {self.kinds}, not {kind!r}")
        states = trace_states(self.model.decoder, last["features"], last["caption"].tokens)
        return states[kind].numpy(), ["<start>", *last["caption"].words]  # row t: after reading word t

    def look_inside(self, last: dict | None, kind: str = "c", cells: int = 16) -> tuple[Figure, int, Figure, Scored]:
        """Heatmap of the ``cells`` LSTM cells that vary most over the last caption, then the top one alone."""
        cells = _checked("cells", cells, int)
        values, labels = self._trace(last, kind)
        top = np.argsort(-values.std(axis=0))[:cells]
        return _states_figure(values, labels, top, kind), int(top[0]), *_cell_view(values, labels, int(top[0]), kind)

    def cell(self, last: dict | None, kind: str = "c", index: int = 0) -> tuple[Figure, Scored]:
        """One cell's value after each word of the last caption: a plot, and the words coloured by it."""
        values, labels = self._trace(last, kind)
        index = _checked("cell index", index, int, (0, values.shape[1] - 1))
        return _cell_view(values, labels, index, kind)

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


def _slider(name: str, label: str, step: float, value: float | None = None, **kwargs) -> gr.Slider:
    lo, hi = LIMITS[name]
    return gr.Slider(lo, hi, value=DEFAULTS[name] if value is None else value, step=step, label=label, **kwargs)


def build_ui(model: Captioner) -> gr.Blocks:
    """The page: one shared image on the left, the Caption / Look inside / Ask tabs on the right."""
    demo = Demo(model)
    hidden = model.decoder.config.hidden_dim
    with gr.Blocks(title="captioner", delete_cache=CACHE_CLEANUP) as ui:
        gr.Markdown("# captioner\nDescribe a photo in words, see inside the LSTM that writes them, "
                    "and ask questions about the photo. Everything runs offline on this computer's CPU.")
        last = gr.State(None)  # this session's last caption and its image features, for "Look inside"
        with gr.Row():
            with gr.Column(scale=2):
                image = gr.Image(label="Image", sources=["upload", "clipboard", "webcam"], type="filepath",
                                 image_mode=None, height=360, elem_id="image")
                examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image], examples_per_page=len(examples),
                                label="Examples (CC BY 2.0 photos from COCO, see examples/CREDITS.md)")
            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab("Caption", id="caption"):
                        caption_btn = gr.Button("Caption", variant="primary")
                        caption_text = gr.Textbox(label="Caption", interactive=False, elem_id="caption-text")
                        caption_words = gr.HighlightedText(label="Word probabilities (darker: more sure)",
                                                           show_inline_category=False)
                        nbest = gr.Dataframe(
                            headers=["rank", "caption", "score", "log-prob"], interactive=False,
                            datatype=["number", "str", "number", "number"], elem_id="alternatives",
                            label=f"Alternatives, ranked by score: log-prob / length ** "
                                  f"{model.decoding.length_penalty:g} (the length penalty)")
                        with gr.Accordion("Decoding settings", open=False):
                            method = gr.Radio([("beam search", "beam"), ("greedy", "greedy"), ("sample", "sample")],
                                              value=DEFAULTS["method"], label="Method")
                            beam_size = _slider("beam_size", "Beam size", 1, model.decoding.beam_size)
                            alternatives = _slider("alternatives",
                                                   "Alternatives (beam: at most the beam size; greedy: 1)", 1)
                            temperature = _slider("temperature", "Temperature (sampling)", 0.1, visible=False)
                            top_k = _slider("top_k", "Top-k (sampling; 0 = all words)", 1, visible=False)
                    with gr.Tab("Look inside", id="inside"):
                        gr.Markdown(
                            "The decoder is an LSTM: after each word it updates a memory vector `c_t` and an output "
                            "`h_t`. Following Karpathy, Johnson & Fei-Fei, *Visualizing and Understanding Recurrent "
                            "Networks* (searching for interpretable cells), the heatmap shows the cells that change "
                            "most over the caption; pick a cell below to follow it word by word.")
                        with gr.Row():
                            kind = gr.Radio([(KINDS[k], k) for k in demo.kinds], value=demo.kinds[0], label="State")
                            n_cells = gr.Slider(1, min(64, hidden), value=min(16, hidden), step=1, label="Cells shown")
                        heatmap = gr.Plot(label="Most varying cells", format="png", elem_id="heatmap")
                        cell_index = gr.Slider(0, hidden - 1, value=0, step=1, label="Cell index", elem_id="cell-index")
                        cell_plot = gr.Plot(label="One cell over the caption", format="png", elem_id="cell-plot")
                        cell_words = gr.HighlightedText(label="Words coloured by this cell (red: +, purple: -)",
                                                        show_inline_category=False)
                    with gr.Tab("Ask", id="ask"):
                        if model.vqa is None:
                            gr.Markdown("**VQA weights are missing**: questions cannot be answered until the app is "
                                        "started with weights that include a `vqa/` folder.")
                        question = gr.Textbox(label="Question", placeholder="What colour is the car?",
                                              elem_id="question")
                        ask_btn = gr.Button("Ask", variant="primary")
                        answers = gr.Label(num_top_classes=TOP_ANSWERS, label="Answers", elem_id="answers")

        method.change(lambda m: (gr.update(visible=m == "beam"), gr.update(visible=m == "sample"),
                                 gr.update(visible=m == "sample")),
                      method, [beam_size, temperature, top_k], queue=False, api_visibility="private")
        caption_inputs = [image, method, beam_size, temperature, top_k, alternatives]
        caption_outputs = [caption_text, nbest, caption_words, last]
        inside_outputs = [heatmap, cell_index, cell_plot, cell_words]
        # A new image (an upload, an example, or none) clears what was shown for the previous one.
        image.change(lambda: (None,) * 8, None,
                     [*caption_outputs, heatmap, cell_plot, cell_words, answers], queue=False,
                     api_visibility="private")

        # The page's events, whose mistakes are warnings (see _warned); named page_* so that the API endpoints
        # below keep the plain names (a private event still takes its function's name). The image arrives
        # unprocessed ({"path": ...}) so that load_image, not Gradio, reads it and explains in one line why a
        # file is not a usable image.
        def inside_new_caption(last: dict | None, kind: str, cells: int) -> Any:
            """The Look-inside plots of a new caption; none after a mistake (already warned about)."""
            return demo.look_inside(last, kind, cells) if last else gr.skip()

        caption_btn.click(_warned(demo.caption), caption_inputs, caption_outputs, preprocess=False,
                          api_name="page_caption", api_visibility="private").success(
            inside_new_caption, [last, kind, n_cells], inside_outputs, api_visibility="private")
        gr.on([kind.change, n_cells.release], _warned(demo.look_inside), [last, kind, n_cells], inside_outputs,
              api_name="page_look_inside", api_visibility="private")
        # "input": a drag, or a number typed in the slider's box (its Enter and "release" send nothing new).
        cell_index.input(_warned(demo.cell), [last, kind, cell_index], [cell_plot, cell_words],
                         trigger_mode="always_last", api_name="page_cell", api_visibility="private")
        gr.on([ask_btn.click, question.submit], _warned(demo.ask), [image, question], answers, preprocess=False,
              api_name="page_ask", api_visibility="private")

        # The API endpoints: the same handlers, whose mistakes are errors, wired to a button that is never shown.
        # Unprocessed inputs: the handlers check every value themselves, in one line, with no traceback logged.
        api = gr.Button(visible=False)
        api.click(demo.caption, caption_inputs, caption_outputs, api_name="caption", preprocess=False)
        api.click(demo.look_inside, [last, kind, n_cells], inside_outputs, api_name="look_inside", preprocess=False)
        api.click(demo.cell, [last, kind, cell_index], [cell_plot, cell_words], api_name="cell", preprocess=False)
        api.click(demo.ask, [image, question], answers, api_name="ask", preprocess=False)
    ui.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return ui


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Serve the captioner demo (Gradio) on this computer.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", type=_bool, nargs="?", const=True, default=False, metavar="true|false",
                   help="also make a public gradio.live link (needs internet; default false)")
    p.add_argument("--weights", help="weights entry name, or folder with caption/ (and vqa/); "
                                     "default: the default entry, the shipped weights")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=f"{PRECISION_HELP} (default auto)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = Captioner.from_pretrained(args.weights, precision=args.precision)
    except (FileNotFoundError, ValueError) as e:
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    print(f"captioner app: precision {model.runtime}", flush=True)
    # One thread per request: CONCURRENCY requests then share the cores. Several threads per request
    # oversubscribe them, and on a busy CPU a request can wait seconds for its slowest thread.
    torch.set_num_threads(1)
    model.caption_images([Image.new("RGB", (64, 64))])  # warm-up: the first visitor skips lazy initialisation
    # SIGTERM shuts down as Ctrl-C does, so that Gradio deletes this run's uploads (delete_cache) on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    build_ui(model).launch(server_name=args.host, server_port=args.port, share=args.share,
                           max_file_size=MAX_FILE_SIZE, allowed_paths=[str(EXAMPLES_DIR)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
