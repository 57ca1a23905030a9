"""The app's page: one shared image on the left, the Caption / Look inside / Ask / Chat tabs on the right, and
the events that join them to the handlers (:class:`captioner.app.handlers.Demo`) and to the API endpoints.

:func:`build_ui` lays it out; each ``_*_tab`` builds one tab and returns its components by name; ``_wire_*`` wire
them. The page's own events turn a handler's refusal into a warning (:func:`warned`); the API endpoints
(``/caption``, ``/look_inside``, ``/cell``, ``/ask``, ``/chat``) are the handlers as they are.
"""

from __future__ import annotations

import functools
import html
from typing import Any, Callable

import gradio as gr

from ..choices import SEPARATOR
from ..decoding import DecodeConfig
from ..lecture.inside import state_kinds, state_size
from ..pipeline import TOP_ANSWERS, Captioner
from ..pretrained import Loaded
from .guards import EXAMPLES_DIR, WARNING_SECONDS, CheckedBlocks
from .handlers import ALTERNATIVES, DECODING, MAX_CELLS, Demo
from .lm_tab import lm_tab
from .plots import SHOWS

# The sliders of the decoding settings offer these smaller ranges than DecodeConfig's (an API call may still use
# the whole range).
SLIDER_MAX = {"beam_size": 10, "n_best": 10, "top_k": 100, "temperature": 2.0}
KINDS = {"c": "c_t (cell state)", "h": "h_t (hidden state)"}
CELL_NAMES = {"lstm": "an LSTM", "rnn": "a vanilla RNN", "ssm": "a selective state-space model (its h_t: the output)"}
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
#chat button[aria-label="Clear"] { display: none; }  /* it sat over the messages: a new caption starts again */
.not-sure { display: inline-block; padding: 2px 10px; border-radius: 999px; background: #fde68a; color: #78350f;
            font-weight: 600; margin-right: 6px; }
"""
# The badge under a result below its weights' calibrated threshold (captioner.confidence), and what it means there.
NOT_SURE_MEANS = {
    "caption": "on dev photos, captions this unsure scored less than half as well as a typical one",
    "answer": "on dev questions, answers this unsure were more often wrong than right",
}
MEMORY = (
    "Each answer comes from the photo and the question alone: the model has no memory of this "
    "conversation. One rule links the turns: a pronoun (*it*, *they*, *its*...) or a bare *how many* is read "
    'as the last thing named, by the caption, a question or an answer: after "what is the man holding?" '
    'is answered "umbrella", "what color is **it**?" asks about *the umbrella*. An answer that is yes or no, '
    "a number or a colour names nothing, and each answer shows the question as it was read."
)

Ports = dict[str, tuple[list, Any]]  # an API endpoint's name: (its input components, its output component(s))


def hidden() -> dict:
    """An output emptied and hidden (the Ask tab's highlight, when no answer rests on the concept detectors)."""
    return gr.update(value=None, visible=False)


def answered(ask: dict) -> list:
    """The Ask tab's outputs for one question: the answers, the badge and evidence, the highlight (last)."""
    return [ask["answers"], ask["sure"], ask["highlight"]]


def warned(handler: Callable, cleared: Any) -> Callable:
    """``handler`` for the page's own events: a mistake becomes a one-line warning and the outputs show
    ``cleared`` (empty: what they showed no longer answers what was asked; an error would mark every output
    panel with a red "Error" badge). The API endpoints use the handlers as they are, so that API callers get
    the error."""

    @functools.wraps(handler)
    def page_handler(*args: Any) -> Any:
        try:
            return handler(*args)
        except gr.Error as e:
            gr.Warning(e.message, duration=WARNING_SECONDS)
            return cleared

    return page_handler


def badge(sure: bool | None, result: str, reason: str | None = None) -> str:
    """The "not sure" badge (HTML) of a caption or an answer, with what it means there or the ``reason`` it is not
    sure (a panorama's); nothing when it is sure or the weights have no threshold."""
    why = html.escape(reason or NOT_SURE_MEANS[result])
    return "" if sure is not False else f'<span class="not-sure">not sure</span> {why}'


# ---------------------------------------------------------------- the layout


def build_ui(model: Captioner, other: Loaded | None = None) -> gr.Blocks:
    """The page: one shared image on the left, the Caption / Look inside / Ask / Chat tabs on the right. ``other``:
    the other cell's decoder, beside this one in the gradient plot. Not queued yet (see
    :func:`captioner.app.server.serve`)."""
    demo = Demo(model, other)
    with CheckedBlocks(title="captioner", analytics_enabled=False) as ui:
        gr.Markdown(
            "# captioner\nDescribe a photo in words, see inside the LSTM that writes them, "
            "and ask questions about the photo. Everything runs offline on this computer's CPU."
        )
        last = gr.State(None)  # this session's last caption and its image features, for "Look inside"
        with gr.Row():
            with gr.Column(scale=2):
                image = _image_column()
            # on a phone the five tabs wrap to a second row rather than hide some behind a menu
            with gr.Column(scale=3), gr.Tabs(overflow_behavior="wrap"):
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
        ui.api_names = _wire(demo, image, last, caption, inside, ask, chat)  # CheckedBlocks: the handlers check these
    return ui


def _slider(name: str, label: str, step: float, value: float, low: float | None = None, **kwargs) -> gr.Slider:
    """A decoding control over its setting's range, capped at :data:`SLIDER_MAX` (an API call may go further)."""
    limits = DecodeConfig.__dataclass_fields__[name].metadata["limits"]
    low = limits.get("low", 0) if low is None else low
    return gr.Slider(low, min(limits["high"], SLIDER_MAX[name]), value=value, step=step, label=label, **kwargs)


def _image_column() -> gr.Image:
    """The shared image, with the example photos under it."""
    image = gr.Image(
        label="Image",
        sources=["upload", "clipboard", "webcam"],
        type="filepath",
        image_mode=None,
        height=360,
        elem_id="image",
    )
    examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
    if examples:
        gr.Examples(
            [[str(p)] for p in examples],
            inputs=[image],
            examples_per_page=len(examples),
            label="Examples (CC BY 2.0 photos from COCO, see examples/CREDITS.md)",
            elem_id="examples",
        )
    return image


def _caption_tab(model: Captioner) -> dict[str, Any]:
    """The Caption tab: the button, the caption, its word probabilities, the alternatives, the settings."""
    ui = {
        "button": gr.Button("Caption", variant="primary", elem_id="caption-button"),
        "text": gr.Textbox(label="Caption", interactive=False, elem_id="caption-text"),
        "sure": gr.HTML(elem_id="caption-sure"),
        "words": gr.HighlightedText(label="Word probabilities (darker: more sure)", show_inline_category=False),
        "nbest": gr.Dataframe(
            headers=["rank", "caption", "score", "log-prob"],
            interactive=False,
            datatype=["number", "str", "number", "number"],
            elem_id="alternatives",
            wrap=True,
            column_widths=["14%", "46%", "20%", "20%"],  # all fit a phone
            label=f"Alternatives, ranked by score: log-prob / length ** "
            f"{model.decoding.length_penalty:g} (the length penalty)",
        ),
    }
    with gr.Accordion("Decoding settings", open=False):
        ui["method"] = gr.Radio(
            [("beam search", "beam"), ("greedy", "greedy"), ("sample", "sample")], value=DECODING.method, label="Method"
        )
        ui["beam_size"] = _slider("beam_size", "Beam size", 1, model.decoding.beam_size)
        ui["alternatives"] = _slider("n_best", "Alternatives (beam: at most the beam size; greedy: 1)", 1, ALTERNATIVES)
        ui["temperature"] = _slider(
            "temperature", "Temperature (sampling)", 0.1, DECODING.temperature, low=0.1, visible=False
        )
        ui["top_k"] = _slider("top_k", "Top-k (sampling; 0 = all words)", 1, DECODING.top_k, visible=False)
    return ui


def _inside_tab(model: Captioner, shows: list[str]) -> dict[str, Any]:
    """The Look inside tab: the heatmap of the cells chosen, one cell word by word, and the gradient flow."""
    gr.Markdown(
        f"The decoder is {CELL_NAMES.get(model.decoder.config.cell, model.decoder.config.cell)}: after each "
        "word it updates its state (`c_t`, the LSTM's memory, and the output `h_t`). Following Karpathy, Johnson "
        "& Fei-Fei, *Visualizing and Understanding Recurrent Networks*, the cells are labelled by what they track "
        "across all dev captions (the weights' cell atlas): the words after or before which they stand out, or "
        "the position in the caption. Pick a cell to follow it word by word. Below: how far back the last "
        "word's gradient reaches, in an LSTM and a vanilla RNN (the lecture's vanishing gradient)."
    )
    size, kinds = state_size(model), state_kinds(model)
    with gr.Row():
        kind = gr.Radio([(KINDS[k], k) for k in kinds], value=kinds[0], label="State")
        show = gr.Radio([(SHOWS[k], k) for k in shows], value=shows[0], label="Cells", elem_id="cell-choice")
        cells = gr.Slider(1, min(MAX_CELLS, size), value=min(16, size), step=1, label="Cells shown")
    # The plots' titles say what they show: a block label would float over the title and the first point.
    return {
        "kind": kind,
        "show": show,
        "cells": cells,
        "heatmap": gr.Plot(format="png", show_label=False, elem_id="heatmap"),
        "pick": gr.Dropdown([], label="Pick a cell by what it tracks", elem_id="cell-pick"),
        "index": gr.Slider(0, size - 1, value=0, step=1, label="Cell index", elem_id="cell-index"),
        "plot": gr.Plot(format="png", show_label=False, elem_id="cell-plot"),
        "words": gr.HighlightedText(
            label="Words coloured by this cell (red: +, purple: -)", show_inline_category=False, elem_id="cell-words"
        ),
        "gradients": gr.Plot(format="png", show_label=False, elem_id="gradient-flow"),
    }


def _ask_tab(model: Captioner) -> dict[str, Any]:
    """The Ask tab: a question, its top answers, and for an answer the concept detectors gave, the photo with where
    they saw the object highlighted (hidden for other answers)."""
    if model.vqa is None:
        gr.Markdown(
            "**VQA weights are missing**: questions cannot be answered until the app is "
            "started with weights that include a `vqa/` folder."
        )
    return {
        "question": gr.Textbox(label="Question", placeholder="What colour is the car?", elem_id="question"),
        "choices": gr.Textbox(
            label=f"Choices (optional, separated by {SEPARATOR}: every choice gets a probability)",
            placeholder="red | blue | green",
            elem_id="choices",
        ),
        "button": gr.Button("Ask", variant="primary"),
        "answers": gr.Label(num_top_classes=TOP_ANSWERS, label="Answers", elem_id="answers"),
        "sure": gr.HTML(elem_id="answer-sure"),
        "highlight": gr.Image(type="pil", interactive=False, visible=False, height=360, elem_id="answer-highlight"),
    }


def _chat_tab() -> dict[str, Any]:
    """The Chat tab: the caption opens the conversation, then each question is answered in turn."""
    gr.Markdown(MEMORY)
    # No floating label and no buttons above the messages (share, clear, copy all): they covered the newest message,
    # and on a phone the label. Each message keeps its own copy button.
    gr.Markdown("**Conversation**: the caption on the Caption tab opens it; a new caption starts a new one.")
    return {
        "history": gr.Chatbot(label="Conversation", show_label=False, buttons=["copy"], elem_id="chat", height=360),
        "question": gr.Textbox(label="Question", placeholder="What color is it?", elem_id="chat-question"),
        "button": gr.Button("Send", variant="primary", elem_id="chat-send"),
    }


# ---------------------------------------------------------------- the events


def _wire(
    demo: Demo, image: gr.Image, last: gr.State, cap: dict, inside: dict, ask: dict, chat: dict
) -> frozenset[str]:
    """The page's events and the API endpoints. Page events turn mistakes into warnings (see :func:`warned`) and
    are named page_* so that the API endpoints keep the plain names; the image arrives unprocessed (``{"path":
    ...}``) so that ``load_image``, not Gradio, reads it and explains in one line why a file is not usable.
    Returns the API endpoints' names."""
    cap["method"].change(
        lambda m: (gr.update(visible=m == "beam"), gr.update(visible=m == "sample"), gr.update(visible=m == "sample")),
        cap["method"],
        [cap["beam_size"], cap["temperature"], cap["top_k"]],
        queue=False,
        api_visibility="private",
    )
    ports: Ports = {
        "caption": (
            [image, cap["method"], cap["beam_size"], cap["temperature"], cap["top_k"], cap["alternatives"]],
            [cap["text"], cap["nbest"], cap["words"], last],
        ),
        "look_inside": (
            [last, inside["kind"], inside["cells"], inside["show"]],
            [inside["heatmap"], inside["index"], inside["plot"], inside["words"], inside["pick"], inside["gradients"]],
        ),
        "cell": ([last, inside["kind"], inside["index"]], [inside["plot"], inside["words"]]),
        "ask": ([image, ask["question"], ask["choices"]], ask["answers"]),
        "chat": ([image, chat["history"], chat["question"]], [chat["history"], chat["question"]]),
    }
    _wire_caption(demo, image, cap, inside, ask, chat, ports)
    _wire_inside(demo, inside, ports)
    _wire_questions(demo, ask, chat, ports)
    # The API endpoints: the same handlers, whose mistakes are errors, wired to a button that is never shown.
    # Unprocessed inputs: the handlers check every value themselves, in one line, with no traceback logged. /chat's
    # output unprocessed too: the messages as the docs show them, {"role", "content": text}, not Gradio's parts.
    api = gr.Button(visible=False)
    for name, (inputs, outputs) in ports.items():
        api.click(getattr(demo, name), inputs, outputs, api_name=name, preprocess=False, postprocess=name != "chat")
    return frozenset(ports)


def _wire_caption(demo: Demo, image: gr.Image, cap: dict, inside: dict, ask: dict, chat: dict, ports: Ports) -> None:
    """A new image, or the Caption button: the caption (with its "not sure" badge, which the API leaves out) and a
    new conversation opened by it, both from the one caption in one event, then the Look inside plots of it; a new
    image also clears what was shown for the previous one.

    The caption event opens the conversation itself (issue 38): opened by an event chained after the Look-inside
    plots, it came seconds after the caption, a question asked meanwhile got a conversation the chat opened with a
    caption of its own (beam search, whatever the Caption tab had used), and the previous caption's chain could
    open its conversation after the new caption was shown."""
    (caption_in, caption_out), (inside_in, inside_out) = ports["caption"], ports["look_inside"]
    page_caption_out = [*caption_out, cap["sure"], chat["history"]]

    def caption_badged(*args: Any) -> tuple:
        *outputs, last = demo.caption(*args)
        opened = [{"role": "assistant", "content": outputs[0]}]  # the caption shown opens the conversation
        return *outputs, last, badge(last["caption"].sure, "caption", last["caption"].warning), opened

    page_caption = warned(caption_badged, cleared=(None,) * len(page_caption_out))

    def caption_new_image(image: dict | None, *settings: Any) -> Any:
        """A new image is captioned at once (or told at once why it can't be); none: nothing to do."""
        return page_caption(image, *settings) if image else gr.skip()

    def inside_new_caption(last: dict | None, kind: str, cells: int, show: str) -> Any:
        """The Look-inside plots of a new caption; none after a mistake (already warned about)."""
        return demo.look_inside(last, kind, cells, show) if last else gr.skip()

    # A new image (an upload, an example, or none) clears what was shown for the previous one, then is captioned.
    shown = [*page_caption_out, *(inside[k] for k in ("heatmap", "plot", "words", "gradients")), *answered(ask)]
    image.change(
        lambda: (*(None,) * (len(shown) - 1), hidden()), None, shown, queue=False, api_visibility="private"
    ).then(
        caption_new_image,
        caption_in,
        page_caption_out,
        preprocess=False,
        api_name="page_new_image",
        api_visibility="private",
    ).success(inside_new_caption, inside_in, inside_out, api_visibility="private")
    # The Caption button (other settings: another caption) does the same for the image shown.
    cap["button"].click(
        page_caption, caption_in, page_caption_out, preprocess=False, api_name="page_caption", api_visibility="private"
    ).success(inside_new_caption, inside_in, inside_out, api_visibility="private")


def _wire_inside(demo: Demo, inside: dict, ports: Ports) -> None:
    """Look inside: another state, number of cells or choice of cells redraws the plots; a cell picked by its
    label or by its index redraws that cell's."""
    (inside_in, inside_out), (cell_in, cell_out) = ports["look_inside"], ports["cell"]
    gr.on(
        [inside["kind"].change, inside["cells"].release, inside["show"].change],
        warned(demo.look_inside, (None, gr.skip(), None, None, gr.skip(), None)),
        inside_in,
        inside_out,
        api_name="page_look_inside",
        api_visibility="private",
    )
    # A cell picked by its label: the index follows, and the cell's plot.
    inside["pick"].input(
        lambda index: index,
        inside["pick"],
        inside["index"],
        queue=False,
        api_name="page_pick",
        api_visibility="private",
    ).then(warned(demo.cell, (None, None)), cell_in, cell_out, api_name="page_pick_cell", api_visibility="private")
    # "input": a drag, or a number typed in the slider's box (its Enter and "release" send nothing new).
    inside["index"].input(
        warned(demo.cell, (None, None)),
        cell_in,
        cell_out,
        trigger_mode="always_last",
        api_name="page_cell",
        api_visibility="private",
    )


def _wire_questions(demo: Demo, ask: dict, chat: dict, ports: Ports) -> None:
    """Ask (the answers, with the "not sure" badge and what an answer from the concept detectors rests on, its
    concepts and the photo highlighted where they saw it, which the API leaves out) and Chat (one turn)."""
    (ask_in, _), (chat_in, chat_out) = ports["ask"], ports["chat"]

    def ask_badged(image: dict | None, question: str, choices: str | None = None) -> tuple[dict[str, float], str, dict]:
        answers = demo.ask(image, question, choices)
        if choices and choices.strip():  # probabilities over the user's choices: the threshold is not theirs
            return answers, "", hidden()
        why, where, label = demo.evidence(image, question)
        top = max(answers, key=answers.get)
        sure = badge(demo.model.vqa.sure(answers[top], top), "answer")
        return answers, sure + why, gr.update(value=where, label=label, visible=True) if where is not None else hidden()

    gr.on(
        [ask["button"].click, ask["question"].submit, ask["choices"].submit],
        warned(ask_badged, (None, None, hidden())),
        ask_in,
        answered(ask),
        preprocess=False,
        api_name="page_ask",
        api_visibility="private",
    )
    gr.on(
        [chat["button"].click, chat["question"].submit],
        warned(demo.chat, (gr.skip(), gr.skip())),
        chat_in,
        chat_out,
        preprocess=False,
        api_name="page_chat",
        api_visibility="private",
    )
