"""The app's guards: every request is untrusted, and refused in one line when it asks for what the app does not do.

- :func:`mistake`: a refusal, one line for the user and one in the server log (no traceback);
- :func:`whole`, :func:`image_file`, :func:`messages`: a request's values checked, by the handlers and before them;
- :class:`CheckedBlocks`: the Blocks that check a request's inputs before Gradio acts on them, and that refuse
  on the page's own events any value the page did not offer;
- :class:`RequestLimits`: the ASGI middleware that caps an upload request at one file of :data:`MAX_FILE_MB` MB
  and any other request's body at :data:`MAX_BODY_KB` kB, before either is parsed.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
from fastapi import HTTPException
from gradio.exceptions import ComponentProcessingError
from gradio.state_holder import SessionState
from gradio.utils import get_upload_folder
from pydantic import ValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse

from ..chat import CHAT_LIMITS
from ..images import MAX_PIXELS

PACKAGE = Path(__file__).resolve().parent.parent  # captioner/
# The example photos: installed inside the package (a wheel), else the examples/ folder of a checkout.
EXAMPLES_DIR = PACKAGE / "examples" if (PACKAGE / "examples").is_dir() else PACKAGE.parent / "examples"
MAX_FILE_MB = 25  # the largest upload, in MB of 2**20 bytes as Gradio counts them (it refuses larger files)
MAX_UPLOAD_FILES = 1  # files per upload request: the page and gradio_client send one
MAX_UPLOAD_BYTES = MAX_FILE_MB * MAX_UPLOAD_FILES * 2**20 + 2**16  # a request's whole body: its files and form
# Any other request's body (JSON: an API call, a page event). The largest the app accepts is a chat history of
# 200 messages of 2000 characters (captioner.chat.LIMITS), about 420 kB as UTF-8 text; images come by upload.
# Parsing a body costs up to 60 times its size, so a 30 MB question cost 1.8 GB before it was refused.
MAX_BODY_KB = 1024
IMAGE_LIMITS_NOTE = f"this app reads images of up to {MAX_PIXELS / 1e6:g} megapixels and {MAX_FILE_MB} MB"
# The one answer to an image path that is not a Gradio upload or an example: the same for every such path, so
# that it tells nothing about the server's files (whether one exists, is a folder, is an image).
REFUSED = "Upload the image again: this app reads only images uploaded to it and its own examples."
QUOTED_CHARS = 40  # characters of a value sent by a client that a message quotes, at most
WARNING_SECONDS = 6  # a warning disappears after this, so that warnings never pile up on the screen
REASON_CHARS = 200  # characters of a reason given by a library (Gradio, the decoding settings) a message quotes

Messages = list[dict[str, str]]  # a chat history: {"role": "user" or "assistant", "content": text}


def mistake(message: str) -> gr.Error:
    """A refused request: one line for the user, and one line in the server log (no traceback)."""
    print(f"captioner app: refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def quoted(value: Any) -> str:
    """A client's value as a message quotes it: a short prefix of a string or number; the type of anything else."""
    if isinstance(value, str):
        return repr(value[:QUOTED_CHARS]) + ("..." if len(value) > QUOTED_CHARS else "")
    return repr(value)[:QUOTED_CHARS] if isinstance(value, (int, float)) else f"a {type(value).__name__}"


def whole(name: str, value: Any, low: int = 0, high: int | None = None) -> int:
    """An API value that must be a whole number (a slider may send 3.0), or a one-line error."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise mistake(f"{name} must be a number, not {quoted(value)}") from None
    if not number.is_integer() or number < low or high is not None and number > high:
        raise mistake(
            f"{name} must be a whole number from {low}"
            + (f" to {high}" if high is not None else "")
            + f", not {quoted(value)}"
        )
    return int(number)


def image_roots() -> list[Path]:
    """Where images may come from: the app's upload folder and its examples."""
    return [Path(get_upload_folder()).resolve(), EXAMPLES_DIR.resolve()]


def image_file(payload: Any, roots: Sequence[Path]) -> Path:
    """The regular file that an image payload names, when it lies (symbolic links resolved) under one of
    ``roots``: the app's upload folder and its examples. Any other path gets :data:`REFUSED`, decided
    from the path and ``stat`` alone, so nothing else is opened (not a FIFO, not /dev/stdin).

    Requests are checked before Gradio handles them (see :class:`CheckedBlocks`), and again by the handlers.
    """
    if not payload or isinstance(payload, dict) and not payload.get("path"):
        raise mistake("Upload an image first (or pick an example).")
    path = payload.get("path") if isinstance(payload, dict) else None
    try:
        real = Path(os.path.realpath(path)) if isinstance(path, str) else None
        if real and any(real.is_relative_to(root) for root in roots) and real.is_file():
            return real
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte in it
        pass
    raise mistake(REFUSED)


def messages(history: Any) -> Messages:
    """A chat history from a request as plain messages, or a one-line error: a list of at most
    ``max_messages`` messages, each a user's or the assistant's text (a string, or Gradio's text parts). Checked
    before Gradio reads it too (:class:`CheckedBlocks`): a message that names a file is refused, never read."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise mistake(f"history must be a list of messages, not {quoted(history)}")
    if len(history) > CHAT_LIMITS.max_messages:
        raise mistake(f"history holds {len(history)} messages; at most {CHAT_LIMITS.max_messages}: start again")
    checked = []
    for n, message in enumerate(history, 1):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # Gradio's own form: [{"type": "text", "text": ...}, ...]
            parts = [part.get("text") if isinstance(part, dict) else None for part in content]
            content = " ".join(parts) if all(isinstance(t, str) for t in parts) else None
        if not isinstance(content, str) or message.get("role") not in ("user", "assistant"):
            raise mistake(f'history message {n} must be {{"role": "user" or "assistant", "content": text}}')
        if len(content) > CHAT_LIMITS.max_message_chars:
            raise mistake(
                f"history message {n} is too long ({len(content)} characters; at most {CHAT_LIMITS.max_message_chars})"
            )
        checked.append({"role": message["role"], "content": content})
    return checked


def as_chatbot(history: Messages) -> list[dict]:
    """Checked messages in the form Gradio's Chatbot validates (each content a list of text parts), with no
    other keys: Gradio refuses a plain-text content with a traceback and no message."""
    return [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in history]


def offered(block: gr.components.Component, value: Any) -> str | None:
    """Why ``value`` is not one the page's ``block`` offers (None when it is): a slider's number within its range
    and on its steps, one of a radio's or dropdown's choices, an example's index, a text. Values of the page's
    own events only: the API endpoints take wider ranges, and their handlers check them."""
    name = block.label or type(block).__name__.lower()
    if isinstance(block, gr.Slider):
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        steps = (number - block.minimum) / block.step if block.step else 0.0
        if not block.minimum <= number <= block.maximum or abs(steps - round(steps)) > 1e-6:
            return f"{name}: the page offers {block.minimum:g} to {block.maximum:g}, not {quoted(value)}"
    elif isinstance(block, (gr.Radio, gr.Dropdown)):
        choices = [choice[1] if isinstance(choice, (tuple, list)) else choice for choice in block.choices or []]
        if value not in choices and (value is not None or isinstance(block, gr.Radio)):
            return f"{name}: not one of the page's choices: {quoted(value)}"
    elif isinstance(block, gr.Dataset):
        if type(value) is not int or not 0 <= value < len(block.samples):
            return f"examples: the page offers {len(block.samples)}, numbered from 0, not {quoted(value)}"
    elif isinstance(block, gr.Textbox) and value is not None and not isinstance(value, str):
        return f"{name} must be text, not {quoted(value)}"
    return None


class CheckedBlocks(gr.Blocks):
    """Blocks that check a request's inputs before Gradio acts on them, refusing in one line with no traceback:
    - too few inputs (Gradio's own check logs a traceback and tells the client nothing), unless those left out
      are optional (their handler parameter defaults to None: ``/ask``'s choices);
    - an image path that is not one of the app's own files (uploads, examples). Gradio records a path inside its
      upload folder for deletion, even the folder itself, which would stop its cleanup; the handlers see it only
      afterwards;
    - a chat history that is not text messages (:func:`messages`), which Gradio would validate and search for
      files first; one that is, it gets in Gradio's own form (:func:`as_chatbot`);
    - on the page's own events (every event but the API endpoints ``api_names``), a value the page did not offer
      (:func:`offered`);
    - and what Gradio's own checks refuse (a value its data model or a component's preprocessing refuses), which
      it would log with a traceback and send to the client as ``{"error": null}``."""

    api_names: frozenset[str] = frozenset()  # the API endpoints, whose handlers check every value themselves

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        if len(inputs) < len(block_fn.inputs):
            # trailing inputs whose handler parameter defaults to None are optional, as gradio_client has them
            left_out = list(inspect.signature(block_fn.fn).parameters.values())[len(inputs) : len(block_fn.inputs)]
            if len(left_out) < len(block_fn.inputs) - len(inputs) or any(p.default is not None for p in left_out):
                raise mistake(f"{block_fn.name} takes {len(block_fn.inputs)} inputs, not {len(inputs)}")
            inputs.extend([None] * len(left_out))
        roots = image_roots()
        for i, (block, value) in enumerate(zip(block_fn.inputs, inputs)):
            if isinstance(block, gr.Image) and value is not None:
                image_file(value, roots)
            if isinstance(block, gr.Chatbot):
                inputs[i] = as_chatbot(messages(value))

    async def preprocess_data(
        self, block_fn: Any, inputs: list[Any], state: SessionState | None, explicit_call: bool = False
    ) -> list[Any]:
        if block_fn.api_name not in self.api_names and isinstance(inputs, list):
            for block, value in zip(block_fn.inputs, inputs):
                if block.stateful:  # held by the server, not sent
                    continue
                block = state[block._id] if state is not None and block._id in state else block  # choices updated
                why = offered(block, value)
                if why:
                    raise mistake(why)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as e:  # Gradio's own refusals print a traceback
            if not e.print_exception:
                raise
            raise mistake(str(e.message)[:REASON_CHARS]) from None
        except (ComponentProcessingError, ValidationError):
            raise mistake(f"{block_fn.name or 'this event'}: a value of a kind its inputs do not take") from None


def refused(reason: str) -> PlainTextResponse:
    """An HTTP 413 answer to a request over a limit, logged in one line."""
    print(f"captioner app: refused: {reason}", file=sys.stderr, flush=True)
    return PlainTextResponse(reason, status_code=413)


class RequestLimits:
    """ASGI middleware on the size of requests, which Gradio reads whole before any check:

    - a multipart request (an upload) may carry at most :data:`MAX_UPLOAD_FILES` files and
      :data:`MAX_UPLOAD_BYTES` in all, where Gradio limits only each file's size (one request could store 1000
      files);
    - any other request (JSON: an API call, a page event) at most :data:`MAX_BODY_KB` kB, refused before it is
      parsed.

    Over a limit the request is refused with 413: at once when its declared length is over, else as soon as its
    body crosses a limit, before Gradio reads further (what an upload had written is swept). (FastAPI's own
    ``max_body_size`` is recent: Gradio 6 allows FastAPI versions without it.)"""

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        kind, options = parse_options_header(headers.get("content-type", ""))
        upload = kind == b"multipart/form-data"
        limit = MAX_UPLOAD_BYTES if upload else MAX_BODY_KB * 1024
        reason = (
            f"an upload request may carry at most {MAX_UPLOAD_FILES} file(s), {MAX_FILE_MB} MB in all"
            if upload
            else f"a request may carry at most {MAX_BODY_KB} kB (images go by upload)"
        )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await refused(reason)(scope, receive, send)
        # Parts are delimited by "--" + the boundary, which by the format's definition never occurs inside a
        # part: n files make n + 1 delimiters (the last one closes the body).
        delimiter, tail, seen, delimiters = b"--" + options.get(b"boundary", b""), b"", 0, 0

        async def counted() -> dict:
            nonlocal tail, seen, delimiters
            message = await receive()
            body = message.get("body", b"")
            seen += len(body)
            if upload:
                window = tail + body
                delimiters, tail = delimiters + window.count(delimiter), window[-(len(delimiter) - 1) :]
            if seen > limit or delimiters > MAX_UPLOAD_FILES + 1:
                refused(reason)
                raise HTTPException(413, reason)
            return message

        try:
            await self.app(scope, counted, send)
        except ClientDisconnect:  # an abandoned upload: what it stored so far is swept like any old upload
            print("captioner app: a request was abandoned", file=sys.stderr, flush=True)
