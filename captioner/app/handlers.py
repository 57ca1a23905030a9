"""What the app's events and API endpoints call: :class:`Demo`, one method per endpoint.

``/caption``, ``/look_inside``, ``/cell``, ``/ask`` and ``/chat`` are these methods as they are: their signatures
and docstrings are what the API page shows, and each checks its values itself (:mod:`captioner.app.guards`),
refusing a bad one in one line. The page wires the same methods to its own events (:mod:`captioner.app.page`).
"""

from __future__ import annotations

import contextlib
import html
import threading
import warnings
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ..chat import read_turn
from ..choices import parse_choices
from ..confidence import doubted, marked
from ..decoding import MAX_BEAM, METHODS, DecodeConfig
from ..images import BadImageError, aspect_warning, load_image
from ..lecture.atlas import ranked
from ..lecture.inside import gradient_flow, state_kinds, states
from ..look import look_all, question_object
from ..pipeline import TOP_ANSWERS, Captioner
from ..pretrained import Loaded
from .guards import (
    IMAGE_LIMITS_NOTE,
    QUOTED_CHARS,
    REASON_CHARS,
    WARNING_SECONDS,
    Messages,
    image_file,
    image_roots,
    messages,
    mistake,
    quoted,
    whole,
)
from .plots import SHOWS, Scored, cell_view, gradient_figure, highlight, states_figure

ALTERNATIVES, MAX_CELLS = 3, 64  # n-best captions shown by default; cells the heatmap may show
DECODING = DecodeConfig()  # the decoding defaults and ranges the controls show (the weights' own beam size apart)


# Images over this many pixels are decoded one at a time: decoded whole, an 80-megapixel RGBA PNG of a few hundred
# kB takes 320 MB, and with one per core at once the app went past 2 GB.
LARGE_PIXELS = 16_000_000
LARGE_DECODE = threading.Lock()


def _pixels(path: Path) -> int:
    """An image file's pixels, read from its header (0 when it cannot be read: ``load_image`` says why)."""
    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return image.width * image.height
    except Exception:  # noqa: BLE001 - any unreadable file: load_image gives the one-line reason
        return 0


class Demo:
    """The request handlers; their signatures and docstrings are what the API page shows."""

    def __init__(self, model: Captioner, other: Loaded | None = None):
        self.model, self.other = model, other  # other: the decoder of the other cell, for the gradient plot
        self.roots = image_roots()

    def _image(self, payload: dict | None) -> Image.Image:
        """The uploaded file as an RGB image, through ``load_image`` (EXIF, modes, size limits); a large one
        decoded while no other is (:data:`LARGE_PIXELS`)."""
        path = image_file(payload, self.roots)
        name = " ".join(Path(str(payload.get("orig_name") or "the file")).name.split())[:QUOTED_CHARS]  # one line
        try:
            with LARGE_DECODE if _pixels(path) > LARGE_PIXELS else contextlib.nullcontext():
                return load_image(path, size_hint=self.model.image_size)
        except BadImageError as e:
            raise mistake(f"{str(e).replace(str(path), name)} ({IMAGE_LIMITS_NOTE})") from None

    def caption(
        self,
        image: dict | None,
        method: str = DECODING.method,
        beam_size: int | None = None,
        temperature: float = DECODING.temperature,
        top_k: int = DECODING.top_k,
        alternatives: int = ALTERNATIVES,
    ) -> tuple[str, list[list], Scored, dict]:
        """Caption an image. Returns the caption (the best scored); the alternatives (the n-best, or the samples
        drawn), best first, each with the score they are ranked by (log-probability / length ** length penalty) and
        its log-probability; and each word with its probability. ``alternatives`` is capped at the beam size
        (greedy gives one caption); ``beam_size`` defaults to the weights' own. An image wider or taller than 3 to 1
        gets a warning: the model sees it squashed to a square."""
        if not isinstance(method, str) or method not in METHODS:
            raise mistake(f"method must be one of {', '.join(METHODS)}, not {quoted(method)}")
        beam_size = self.model.decoding.beam_size if beam_size is None else whole("beam_size", beam_size, 1)
        alternatives, top_k = whole("alternatives", alternatives, 1, MAX_BEAM), whole("top_k", top_k)
        try:
            temperature = float(temperature)
            n_best = {"greedy": 1, "beam": min(alternatives, beam_size)}.get(method, alternatives)
            cfg = self.model.decoding.override(
                method=method, beam_size=beam_size, n_best=n_best, temperature=temperature, top_k=top_k
            )
        except (TypeError, ValueError) as e:
            raise mistake(f"Bad decoding settings: {str(e)[:REASON_CHARS]}") from None
        picture = self._image(image)
        features, warning = self.model.preprocess([picture]), aspect_warning(picture)
        if warning:  # a panorama: its captions are not sure (the page shows why in the badge), and a toast says so
            gr.Warning(f"This image is {warning}.", duration=WARNING_SECONDS)
        # Samples come in the order drawn: ranked here by score like the beam's, so the best is the one shown.
        captions = doubted(self.model.caption_features(features, cfg)[0], warning)
        captions.sort(key=lambda c: c.score, reverse=True)
        best = captions[0]
        table = [[rank, c.text, round(c.score, 3), round(c.log_prob, 3)] for rank, c in enumerate(captions, 1)]
        spaced = [piece for w, p in zip(best.words, best.word_probs) for piece in ((" ", None), (w, round(p, 3)))]
        return best.text, table, spaced[1:], {"features": features[0], "caption": best}

    def _trace(self, last: dict | None, kind: str) -> tuple[np.ndarray, list[str]]:
        """The LSTM states, word by word, for the session's last caption."""
        if not last:
            raise mistake("Caption an image first: the plots show the cells for that caption.")
        kinds = state_kinds(self.model)
        if not isinstance(kind, str) or kind not in kinds:
            raise mistake(f"kind must be one of {list(kinds)}, not {quoted(kind)}")
        traced = states(self.model, last["features"], last["caption"])
        return traced[kind].numpy(), ["<start>", *last["caption"].words]  # row t: after reading word t

    def look_inside(
        self, last: dict | None, kind: str = "c", cells: int = 16, show: str | None = None
    ) -> tuple[Figure, int, Figure, Scored, gr.Dropdown, Figure | None]:
        """Heatmap of ``cells`` cells over the last caption, then the top one alone; the cells to pick from by what
        they track; and how far back the last word's gradient reaches, in this decoder and the other cell's.
        ``show``: ``word`` (word-selective cells, the default) or ``position`` (position-tracking), from the
        weights' cell atlas; ``varying`` (the cells that vary most over this caption) for weights without one."""
        cells = whole("cells", cells, 1, MAX_CELLS)
        shows = self.shows
        show = shows[0] if show is None else show
        if not isinstance(show, str) or show not in shows:
            raise mistake(f"show must be one of {', '.join(shows)}, not {quoted(show)}")
        values, labels = self._trace(last, kind)
        atlas = self.model.cells.get(kind, [])
        order = np.argsort(-values.std(axis=0)) if show == "varying" else np.array(ranked(atlas, show), dtype=int)
        if not len(order):
            raise mistake(f"The cell atlas of these weights finds no {SHOWS[show]} in {kind}_t.")
        top, picks = order[:cells], order[:MAX_CELLS]
        choice = gr.Dropdown(choices=[(self._cell_name(kind, i), int(i)) for i in picks], value=int(top[0]))
        figure = states_figure(values, labels, top, kind, show, [self._cell_name(kind, i) for i in top])
        return figure, int(top[0]), *cell_view(values, labels, int(top[0]), kind), choice, self._gradients(last)

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
        features, caption = last["features"], last["caption"]
        cell = self.model.decoder.config.cell.upper()
        norms = {f"{cell} (these weights)": gradient_flow(self.model, features, caption).numpy()}
        if self.other is not None:
            other = self.other.entry.name if self.other.entry else self.other.path.name
            norms[f"{self.other.model.config.cell.upper()} ({other})"] = gradient_flow(
                self.model, features, caption, self.other
            ).numpy()
        return gradient_figure(norms, ["<start>", *caption.words])

    def cell(self, last: dict | None, kind: str = "c", index: int = 0) -> tuple[Figure, Scored]:
        """One cell's value after each word of the last caption: a plot, and the words coloured by it."""
        values, labels = self._trace(last, kind)
        return cell_view(values, labels, whole("cell index", index, 0, values.shape[1] - 1), kind)

    def ask(self, image: dict | None, question: str = "", choices: str | None = None) -> dict[str, float]:
        """Answer a question about an image: the top-5 answers with their probabilities; with ``choices``
        (candidates separated by ``|``, ``\\|`` for a ``|`` inside one), every choice with its probability."""
        question = self._question(question)
        if choices is not None and not isinstance(choices, str):
            raise mistake(f"choices must be text, not {quoted(choices)}")
        try:
            offered = parse_choices(choices) if choices and choices.strip() else None
        except ValueError as e:
            raise mistake(f"Bad choices: {e}") from None
        image = self._image(image)
        try:
            return dict(self.model.ask(image, question, top_k=TOP_ANSWERS, choices=offered))
        except ValueError as e:  # the question itself: no words, or more than the model reads
            raise mistake(f"Cannot answer: {e}") from None

    def evidence(self, image: dict | None, question: str) -> tuple[str, Image.Image | None, str]:
        """What an existence or colour answer rests on (:mod:`captioner.look`): one line of HTML (the concept, its
        probability and the cell of the 7 x 7 grid where it fires most), the photo with where the object fires
        highlighted (:func:`.plots.highlight`), and that image's label; ('', None, '') for other questions."""
        vqa = self.model.vqa
        if vqa is None or vqa.concepts is None or question_object(str(question or "")) is None:
            return "", None, ""
        picture = self._image(image)
        features = vqa.preprocess([picture])
        seen = look_all(vqa.concepts, features, [str(question)], vqa.words)[0]
        if seen is None or not seen.evidence:  # not a known concept, or a colour the captions alone gave
            return "", None, ""
        side = round(features.shape[1] ** 0.5)
        parts = [
            f"<b>{html.escape(e.concept)}</b> {100 * e.probability:.0f}% (row {e.region // side + 1}, column "
            f"{e.region % side + 1} of {side})"
            for e in seen.evidence
        ]
        thing = seen.evidence[0]  # the object: a colour is read where it is
        label = f"Where the {thing.concept} detector fires most (the rest darkened)"
        return (
            f'<div class="evidence">Seen by the concept detectors: {", ".join(parts)}</div>',
            highlight(picture, thing.where),
            label,
        )

    def _question(self, question: Any) -> str:
        """A question from a request, stripped, when there is one and a VQA model to answer it."""
        if question is not None and not isinstance(question, str):
            raise mistake(f"question must be text, not {quoted(question)}")
        question = (question or "").strip()
        if not question:
            raise mistake("Type a question first.")
        if self.model.vqa is None:
            raise mistake("VQA weights are missing: this app was started without a vqa/ folder in its weights.")
        return question

    def chat(self, image: dict | None, history: list | None = None, question: str = "") -> tuple[Messages, str]:
        """One turn of a chat about an image: the history (Chatbot messages; none: the caption opens it) with the
        question and its answer added, and an empty question box. The answer comes from the photo and the
        question alone, a pronoun read as the last thing named, by the caption, a question or an answer
        (:mod:`captioner.chat`)."""
        question = self._question(question)
        turns = messages(history)
        image = self._image(image)
        if not turns:
            features = self.model.preprocess([image])
            turns = [{"role": "assistant", "content": self.model.caption_features(features)[0][0].text}]
        opened = turns[0]["role"] == "assistant"  # by the caption
        earlier = [(m["role"], m["content"]) for m in turns[1 if opened else 0 :]]
        read = read_turn(turns[0]["content"] if opened else "", earlier, question)
        try:
            answer, p = self.model.ask(image, read, top_k=1)[0]
        except ValueError as e:
            raise mistake(f"Cannot answer: {e}") from None
        reply = marked(f"{answer} ({100 * p:.0f}%)", self.model.vqa.sure(p, answer))
        if read != question:
            reply += f" (read as: {read})"
        return [*turns, {"role": "user", "content": question}, {"role": "assistant", "content": reply}], ""
