"""The app's guards: every request is untrusted, and refused in one line when it asks for what the app does not do.

- :func:`mistake`: a refusal, one line for the user and one in the server log (no traceback);
- :func:`whole`, :func:`image_file`, :func:`messages`: a request's values checked, by the handlers and before them;
- :class:`CheckedBlocks`: the Blocks that check a request's inputs before Gradio acts on them;
- :class:`UploadLimits`: the ASGI middleware that caps an upload request at one file of :data:`MAX_FILE_MB` MB.
"""
from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
from fastapi import HTTPException
from gradio.utils import get_upload_folder
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
LIMITS = f"this app reads images of up to {MAX_PIXELS / 1e6:g} megapixels and {MAX_FILE_MB} MB"
# The one answer to an image path that is not a Gradio upload or an example: the same for every such path, so
# that it tells nothing about the server's files (whether one exists, is a folder, is an image).
REFUSED = "Upload the image again: this app reads only images uploaded to it and its own examples."
SHOWN = 40  # characters of a value sent by a client that a message quotes, at most

Messages = list[dict[str, str]]  # a Chatbot's value: {"role": "user" or "assistant", "content": text}


def mistake(message: str) -> gr.Error:
    """A refused request: one line for the user, and one line in the server log (no traceback)."""
    print(f"captioner app: refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def shown(value: Any) -> str:
    """A client's value as a message quotes it: a short prefix of a string or number; the type of anything else."""
    if isinstance(value, str):
        return repr(value[:SHOWN]) + ("..." if len(value) > SHOWN else "")
    return repr(value)[:SHOWN] if isinstance(value, (int, float)) else f"a {type(value).__name__}"


def whole(name: str, value: Any, low: int = 0, high: int | None = None) -> int:
    """An API value that must be a whole number (a slider may send 3.0), or a one-line error."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise mistake(f"{name} must be a number, not {shown(value)}") from None
    if not number.is_integer() or number < low or high is not None and number > high:
        raise mistake(f"{name} must be a whole number from {low}" + (f" to {high}" if high is not None else "") +
                      f", not {shown(value)}")
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
        raise mistake(f"history must be a list of messages, not {shown(history)}")
    if len(history) > CHAT_LIMITS.max_messages:
        raise mistake(f"history holds {len(history)} messages; at most {CHAT_LIMITS.max_messages}: start again")
    checked = []
    for n, message in enumerate(history, 1):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # Gradio's own form: [{"type": "text", "text": ...}, ...]
            parts = [part.get("text") if isinstance(part, dict) else None for part in content]
            content = " ".join(parts) if all(isinstance(t, str) for t in parts) else None
        if not isinstance(content, str) or message.get("role") not in ("user", "assistant"):
            raise mistake(f"history message {n} must be {{\"role\": \"user\" or \"assistant\", \"content\": text}}")
        if len(content) > CHAT_LIMITS.max_message_chars:
            raise mistake(f"history message {n} is too long ({len(content)} characters; at most "
                          f"{CHAT_LIMITS.max_message_chars})")
        checked.append({"role": message["role"], "content": content})
    return checked


class CheckedBlocks(gr.Blocks):
    """Blocks that check a request's inputs before Gradio acts on them, refusing in one line:
    - too few inputs (Gradio's own check logs a traceback and tells the client nothing), unless those left out
      are optional (their handler parameter defaults to None: ``/ask``'s choices);
    - an image path that is not one of the app's own files (uploads, examples). Gradio records a path inside its
      upload folder for deletion, even the folder itself, which would stop its cleanup; the handlers see it only
      afterwards;
    - a chat history that is not text messages (:func:`messages`), which Gradio would validate and search for
      files first."""

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        if len(inputs) < len(block_fn.inputs):
            # trailing inputs whose handler parameter defaults to None are optional, as gradio_client has them
            left_out = list(inspect.signature(block_fn.fn).parameters.values())[len(inputs):len(block_fn.inputs)]
            if len(left_out) < len(block_fn.inputs) - len(inputs) or any(p.default is not None for p in left_out):
                raise mistake(f"{block_fn.name} takes {len(block_fn.inputs)} inputs, not {len(inputs)}")
            inputs.extend([None] * len(left_out))
        roots = image_roots()
        for block, value in zip(block_fn.inputs, inputs):
            if isinstance(block, gr.Image) and value is not None:
                image_file(value, roots)
            if isinstance(block, gr.Chatbot):
                messages(value)


class UploadLimits:
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
