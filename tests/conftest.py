"""Shared fixtures: a weights folder and a running app on a free localhost port.

The weights are the shipped ``weights/`` when present; otherwise a tiny caption model is trained
here on generated shapes, so the tests need neither ../shared nor good weights.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest
from gradio_client import Client
from synthetic import make_flickr8k

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_WEIGHTS = ROOT / "weights"
EXAMPLE_IMAGE = ROOT / "examples" / "tennis.jpg"  # one of the demo's CC BY example photos


def free_port() -> int:
    """A localhost port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_tiny_weights(folder: Path) -> Path:
    """A weights folder with a tiny caption model (no vqa/), trained in seconds on generated images."""
    data, run, cache = make_flickr8k(folder / "data"), folder / "run", folder / "cache"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "captioner.cli.main",
            "train",
            "--data",
            f"flickr8k:{data}",
            "--out",
            str(run),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--min-count",
            "1",
            "--cache-dir",
            str(cache),
            "--embed-dim",
            "32",
            "--hidden-dim",
            "32",
            "--image-dim",
            "32",
            "--dropout",
            "0",
            "--lr",
            "5e-3",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"training the tiny weights failed:\n{done.stderr[-3000:]}")
    shutil.copytree(run / "best", folder / "weights" / "caption")
    return folder / "weights"


@contextmanager
def running_app(
    weights: Path,
    log: Path,
    timeout: float = 180.0,
    cache_cleanup: tuple[int, int] | None = None,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[tuple[str, int]]:
    """Start ``python app.py [args]`` on a free port, with ``env`` added to its environment and, when given, its
    ``CACHE_CLEANUP`` replaced; yield its URL and process id; stop it afterwards (SIGTERM)."""
    port = free_port()
    app = (
        [str(ROOT / "app.py")]
        if cache_cleanup is None
        else [
            "-c",
            "import sys, captioner.app.server as app; from captioner.cli.main import main; "
            f"app.CACHE_CLEANUP = {cache_cleanup!r}; sys.exit(main(['app', *sys.argv[1:]]))",
        ]
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *app, "--port", str(port), "--weights", str(weights), *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not answer on {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    if (SHIPPED_WEIGHTS / "caption" / "config.json").exists():
        return SHIPPED_WEIGHTS
    return train_tiny_weights(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def has_vqa(weights_dir: Path) -> bool:
    return (weights_dir / "vqa" / "config.json").exists()


@pytest.fixture(scope="session")
def app_log(tmp_path_factory) -> Path:
    """Where the session's app writes its stdout and stderr (its server log)."""
    return tmp_path_factory.mktemp("app") / "app.log"


@pytest.fixture(scope="session")
def app_url(weights_dir: Path, app_log: Path) -> Iterator[str]:
    """One app process for the whole session (start-up loads the models: seconds, not milliseconds)."""
    with running_app(weights_dir, app_log) as (url, _):
        yield url


@pytest.fixture
def new_log(app_url: str, app_log: Path) -> Callable[[], str]:
    """What the app's server log gained since the test started."""
    start = app_log.stat().st_size
    return lambda: app_log.read_bytes()[start:].decode(errors="replace")


@pytest.fixture(scope="module")
def client(app_url: str) -> Client:
    """A gradio_client for the app, one per test module, so one session: ``/look_inside`` and ``/cell``
    see its last ``/caption``. Plain http on localhost: ``ssl_verify=False`` only skips building an
    unused certificate-checking SSL context per request (about 0.15 s of CPU per call)."""
    return Client(app_url, verbose=False, analytics_enabled=False, ssl_verify=False)
