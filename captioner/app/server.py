"""The captioner demo: caption a photo, look inside the LSTM, ask a question about it.

    captioner app [--host 127.0.0.1] [--port 7860] [--share false] [--weights DIR] [--precision auto] [--runtime auto]
                  [--monitoring false]

(also ``python app.py`` in a checkout). A thin Gradio UI over
:class:`captioner.pipeline.Captioner`, offline on the CPU. The models load once at start-up; every
request goes through Gradio's queue. Named API endpoints: ``/caption``, ``/ask``, ``/chat`` (one chat turn),
``/look_inside`` and ``/cell`` (need a ``/caption`` first in the same session). The README's "The demo
app" section has a ``gradio_client`` example.

The app's rooms: this module serves it (:func:`serve`: start-up, the upload folder, shutdown);
:mod:`~captioner.app.page` lays out the page and wires its events; :mod:`~captioner.app.handlers` holds what
the events and the API endpoints call, :mod:`~captioner.app.plots` the figures of Look inside, and
:mod:`~captioner.app.guards` the checks on requests.

Every request is untrusted: its inputs are checked before Gradio acts on them (:class:`guards.CheckedBlocks`), an
upload request carries one file of 25 MB at most (:class:`guards.UploadLimits`), and the uploads live in a folder
of this run's own, swept of old files while it runs and removed at shutdown (:func:`_upload_cleanup`).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import gradio as gr
import matplotlib
import torch
from PIL import Image
from starlette.middleware import Middleware

from ..lecture.inside import other_cell
from ..pipeline import Captioner
from .guards import EXAMPLES_DIR, MAX_FILE_MB, RequestLimits
from .page import CSS, build_ui

CONCURRENCY = os.cpu_count() or 1  # requests computed at once, one core each (see serve)
QUEUE_SIZE = 64  # requests waiting beyond this are told the queue is full
# The app's own upload folder: every 10 minutes, delete the files older than an hour (and all of them at shutdown).
CACHE_CLEANUP = (600, 3600)
# Sessions whose state the app keeps (Gradio's default: 10,000), the least recently active dropped first. Any
# client names its own session, and each costs about 80 kB in Gradio plus what it last sent and was sent: its
# Look inside data (250 kB of image features, the plots) or its chat history (at most guards.MAX_BODY_KB).
SESSIONS_KEPT = 100
TRIM_EVERY = 30  # seconds between handing the memory freed after a burst of requests back to the system


def _trim_memory() -> None:
    """Hand the memory that C's allocator holds free back to the system (glibc's ``malloc_trim``): after a burst
    of requests, the freed buffers of its many threads stay in the process otherwise. Nothing elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


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
    """The app's lifespan: sweep ``folder`` every ``every`` seconds while it runs (and trim the memory every
    :data:`TRIM_EVERY` seconds), and remove it at shutdown.

    Gradio's own ``delete_cache`` deletes only the files it recorded: not what an abandoned upload left, and one
    recorded folder stops it (IsADirectoryError, then "Application shutdown failed")."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async def sweep_forever() -> None:
            while True:
                await asyncio.sleep(every)
                await asyncio.to_thread(_sweep, folder, age)

        async def trim_forever() -> None:
            while True:
                await asyncio.sleep(TRIM_EVERY)
                await asyncio.to_thread(_trim_memory)

        tasks = [asyncio.create_task(sweep_forever()), asyncio.create_task(trim_forever())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            shutil.rmtree(folder, ignore_errors=True)

    return lifespan


def _launch(model: Captioner, uploads: Path, host: str, port: int, share: bool, monitoring: bool) -> None:
    """Serve the page with ``uploads`` as its upload folder until interrupted (Ctrl-C, SIGTERM or SIGHUP)."""
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    gr.set_static_paths([EXAMPLES_DIR])
    # SIGTERM and SIGHUP (the terminal closed) shut down as Ctrl-C does, so that the uploads are deleted on the way
    # out.
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.default_int_handler)
    ui = build_ui(model, other_cell(model))
    ui.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    # quiet: Gradio's start-up lines would tell users to set share=True in launch(); the app's own say --share true.
    ui.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=f"{MAX_FILE_MB}mb",
        allowed_paths=[str(EXAMPLES_DIR)],
        enable_monitoring=monitoring,
        css=CSS,
        quiet=True,
        state_session_capacity=SESSIONS_KEPT,
        prevent_thread_lock=True,
        app_kwargs={"lifespan": _upload_cleanup(uploads, *CACHE_CLEANUP), "middleware": [Middleware(RequestLimits)]},
    )
    print(f"captioner app: running on {ui.local_url} (Ctrl-C to stop)", flush=True)
    if not share:  # Gradio prints the public link, or why it could not make one
        print("captioner app: for a public gradio.live link too, start it with --share true", flush=True)
    ui.block_thread()


def serve(
    weights: str | None = None,
    precision: str = "auto",
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    monitoring: bool = False,
    runtime: str = "auto",
) -> int:
    """Load the models and serve the app until interrupted (Ctrl-C, SIGTERM or SIGHUP), then remove its uploads;
    2 when the weights can't load. ``monitoring`` turns on Gradio's request statistics (``/monitoring``), which are
    off by default."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage pings
    matplotlib.use("Agg")  # plots are rendered to PNG in worker threads; never open a window
    # One thread per request: CONCURRENCY requests then share the cores. Several threads per request
    # oversubscribe them, and on a busy CPU a request can wait seconds for its slowest thread. Set before
    # loading: an encoder runtime (captioner.runtime) takes its thread count when it loads.
    torch.set_num_threads(1)
    try:
        model = Captioner.from_pretrained(weights, precision=precision, runtime=runtime)
    except (FileNotFoundError, ValueError) as e:
        print(f"captioner app: error: {e}", file=sys.stderr)
        return 2
    print(f"captioner app: runtime {model.runtime}", flush=True)
    model.caption_images([Image.new("RGB", (64, 64))])  # warm-up: the first visitor skips lazy initialisation
    # This run's own upload folder (private, inside GRADIO_TEMP_DIR when set), so that the cleanup deletes
    # nothing of another app's; the examples are served where they are, not copied into it.
    parent = os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    uploads = Path(tempfile.mkdtemp(prefix="captioner-app-", dir=parent))
    try:
        _launch(model, uploads, host, port, share, monitoring)
    finally:
        # Here too, not only in the lifespan's shutdown: Gradio waits 5 s for its server to stop, and a client's
        # stream (any gradio_client that made a call, even closed) keeps it open past that, so the lifespan never
        # got to remove the folder.
        shutil.rmtree(uploads, ignore_errors=True)
    return 0
