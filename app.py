"""The captioner demo: caption a photo, look inside the LSTM, ask a question about it.

    python app.py [--host 127.0.0.1] [--port 7860] [--share false] [--weights DIR]

A thin Gradio UI over :class:`captioner.pipeline.Captioner`, offline on the CPU. The models
load once at start-up; every request goes through Gradio's queue. Named API endpoints:
``/caption``, ``/ask`` (stable), ``/look_inside`` and ``/cell`` (need a ``/caption`` first in the
same session). The README's "The demo app" section has a ``gradio_client`` example.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage pings (read at import)

import gradio as gr  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from captioner.data import BadImageError, load_image  # noqa: E402
from captioner.decoding import trace_states  # noqa: E402
from captioner.pipeline import Captioner, decode_config  # noqa: E402

matplotlib.use("Agg")  # plots are rendered to PNG in worker threads; never open a window

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
CONCURRENCY = os.cpu_count() or 1  # requests computed at once, one core each (see main)
QUEUE_SIZE = 64  # requests waiting beyond this are told the queue is full
MAX_FILE_SIZE = "25mb"
TOP_ANSWERS = 5
# Control ranges, shared by the sliders and the checks on API calls (which bypass the sliders).
LIMITS = {"beam_size": (1, 10), "temperature": (0.1, 2.0), "top_k": (0, 100), "alternatives": (1, 10)}
DEFAULTS = {"method": "beam", "beam_size": 3, "temperature": 1.0, "top_k": 0, "alternatives": 3}
KINDS = {"c": "c_t (cell state)", "h": "h_t (hidden state)"}

Scored = list[tuple[str, float | None]]  # HighlightedText: (text, score or None for no colour)


def _checked(name: str, value: Any, kind: type = float) -> Any:
    """An API value as ``kind`` within ``LIMITS[name]``, or a one-line error."""
    lo, hi = LIMITS[name]
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, not {value!r}") from None
    if not lo <= number <= hi:
        raise gr.Error(f"{name} must be between {lo} and {hi}, not {value!r}")
    return number


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
        self.image_size = model.encoder.spec.image_size
        self.kinds = ["c", "h"] if model.decoder.config.cell == "lstm" else ["h"]

    def _image(self, payload: dict | None) -> Image.Image:
        """The uploaded file as an RGB image, through ``load_image`` (EXIF, modes, size limits)."""
        if not payload or not payload.get("path"):
            raise gr.Error("Upload an image first (or pick an example).")
        path, name = payload["path"], payload.get("orig_name") or "the file"
        try:
            return load_image(path, size_hint=self.image_size)
        except BadImageError as e:
            raise gr.Error(str(e).replace(path, name)) from None

    def caption(self, image: dict | None, method: str = DEFAULTS["method"], beam_size: int = DEFAULTS["beam_size"],
                temperature: float = DEFAULTS["temperature"], top_k: int = DEFAULTS["top_k"],
                alternatives: int = DEFAULTS["alternatives"]) -> tuple[str, list[list], Scored, dict]:
        """Caption an image. Returns the caption, the n-best list with log-probabilities, and each word
        with its probability. ``alternatives`` is capped at the beam size (greedy gives one caption)."""
        beam_size, alternatives = _checked("beam_size", beam_size, int), _checked("alternatives", alternatives, int)
        n_best = {"greedy": 1, "beam": min(alternatives, beam_size)}.get(method, alternatives)
        try:
            cfg = decode_config(self.model.decoding, method=method, beam_size=beam_size, n_best=n_best,
                                temperature=_checked("temperature", temperature), top_k=_checked("top_k", top_k, int))
        except ValueError as e:
            raise gr.Error(f"Bad decoding settings: {e}") from None
        features = self.model.features([self._image(image)])
        captions = self.model.caption_features(features, cfg)[0]
        best = captions[0]
        table = [[rank, c.text, round(c.log_prob, 3)] for rank, c in enumerate(captions, 1)]
        spaced = [piece for w, p in zip(best.words, best.word_probs) for piece in ((" ", None), (w, round(p, 3)))]
        return best.text, table, spaced[1:], {"features": features[0], "caption": best}

    def _trace(self, last: dict | None, kind: str) -> tuple[np.ndarray, list[str]]:
        """The LSTM states, word by word, for the session's last caption."""
        if not last:
            raise gr.Error("Caption an image first: the plots show the cells for that caption.")
        if kind not in self.kinds:
            raise gr.Error(f"kind must be one of {self.kinds}, not {kind!r}")
        states = trace_states(self.model.decoder, last["features"], last["caption"].tokens)
        return states[kind].numpy(), ["<start>", *last["caption"].words]  # row t: after reading word t

    def look_inside(self, last: dict | None, kind: str = "c", cells: int = 16) -> tuple[Figure, int, Figure, Scored]:
        """Heatmap of the ``cells`` LSTM cells that vary most over the last caption, then the top one alone."""
        values, labels = self._trace(last, kind)
        top = np.argsort(-values.std(axis=0))[: max(1, int(cells))]
        return _states_figure(values, labels, top, kind), int(top[0]), *_cell_view(values, labels, int(top[0]), kind)

    def cell(self, last: dict | None, kind: str = "c", index: int = 0) -> tuple[Figure, Scored]:
        """One cell's value after each word of the last caption: a plot, and the words coloured by it."""
        values, labels = self._trace(last, kind)
        if not 0 <= int(index) < values.shape[1]:
            raise gr.Error(f"cell index must be between 0 and {values.shape[1] - 1}")
        return _cell_view(values, labels, int(index), kind)

    def ask(self, image: dict | None, question: str = "") -> dict[str, float]:
        """Answer a question about an image: the top-5 answers with their probabilities."""
        question = str(question or "").strip()
        if not question:
            raise gr.Error("Type a question first.")
        if self.model.vqa is None:
            raise gr.Error("VQA weights are missing: this app was started without a vqa/ folder in its weights.")
        image = self._image(image)
        try:
            return dict(self.model.ask(image, question, top_k=TOP_ANSWERS))
        except ValueError as e:  # the question itself: no words, or more than the model reads
            raise gr.Error(f"Cannot answer: {e}") from None


def _slider(name: str, label: str, step: float, **kwargs) -> gr.Slider:
    lo, hi = LIMITS[name]
    return gr.Slider(lo, hi, value=DEFAULTS[name], step=step, label=label, **kwargs)


def build_ui(model: Captioner) -> gr.Blocks:
    """The page: one shared image on the left, the Caption / Look inside / Ask tabs on the right."""
    demo = Demo(model)
    hidden = model.decoder.config.hidden_dim
    with gr.Blocks(title="captioner") as ui:
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
                        nbest = gr.Dataframe(headers=["rank", "caption", "log-prob"], label="Alternatives",
                                             datatype=["number", "str", "number"], interactive=False)
                        with gr.Accordion("Decoding settings", open=False):
                            method = gr.Radio([("beam search", "beam"), ("greedy", "greedy"), ("sample", "sample")],
                                              value=DEFAULTS["method"], label="Method")
                            beam_size = _slider("beam_size", "Beam size", 1)
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
                        cell_index = gr.Slider(0, hidden - 1, value=0, step=1, label="Cell index")
                        cell_plot = gr.Plot(label="One cell over the caption", format="png")
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
        # The image arrives unprocessed ({"path": ...}) so that load_image, not Gradio, reads it and
        # explains in one line why a file is not a usable image.
        captioned = caption_btn.click(demo.caption, [image, method, beam_size, temperature, top_k, alternatives],
                                      [caption_text, nbest, caption_words, last], api_name="caption",
                                      preprocess=False)
        inside_outputs = [heatmap, cell_index, cell_plot, cell_words]
        gr.on([kind.change, n_cells.release], demo.look_inside, [last, kind, n_cells], inside_outputs,
              api_name="look_inside")
        captioned.success(demo.look_inside, [last, kind, n_cells], inside_outputs, api_name="caption_look_inside",
                          api_visibility="private")
        cell_index.release(demo.cell, [last, kind, cell_index], [cell_plot, cell_words], api_name="cell")
        gr.on([ask_btn.click, question.submit], demo.ask, [image, question], answers, api_name="ask",
              preprocess=False)
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
    p.add_argument("--weights", help="weights folder with caption/ (and vqa/); default: the shipped weights/")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = Captioner.from_pretrained(args.weights)
    except (FileNotFoundError, ValueError) as e:
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    # One thread per request: CONCURRENCY requests then share the cores. Several threads per request
    # oversubscribe them, and on a busy CPU a request can wait seconds for its slowest thread.
    torch.set_num_threads(1)
    model.caption_images([Image.new("RGB", (64, 64))])  # warm-up: the first visitor skips lazy initialisation
    build_ui(model).launch(server_name=args.host, server_port=args.port, share=args.share,
                           max_file_size=MAX_FILE_SIZE, allowed_paths=[str(EXAMPLES_DIR)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
