"""The app against what any client may send (issue 38): the page's own endpoints called with values the page never
offered, request bodies too large to parse, more sessions than it keeps, and a shutdown after clients called.

Each refusal is one line for the client and one in the server log, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLE_IMAGE as EXAMPLE
from conftest import running_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_app import call_raw, upload

from captioner.app.guards import MAX_BODY_KB
from captioner.app.server import SESSIONS_KEPT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def uploaded(app_url) -> dict:
    """An image uploaded to the app, as an API call names it."""
    return {
        "path": upload(app_url, ("tennis.jpg", EXAMPLE.read_bytes())).json()[0],
        "meta": {"_type": "gradio.FileData"},
    }


# The page's own events, called as any HTTP client can, with values the page never offers: each must be refused in
# one line. Before, Gradio's own checks refused them with a traceback in the log and {"error": null}, or its
# components raised (an example index out of range, a word for a slider).
PAGE_CALLS = [
    (
        "page_look_inside",
        lambda image: [None, "c", "many", "word"],
        "^Cells shown: the page offers 1 to 64, not 'many'$",
    ),
    ("page_look_inside", lambda image: [None, "c", 4.5, "word"], "^Cells shown: the page offers 1 to 64, not 4.5$"),
    ("page_look_inside", lambda image: [None, "q", 4, "word"], "^State: not one of the page's choices: 'q'$"),
    ("page_pick", lambda image: [12345], "^Pick a cell by what it tracks: not one of the page's choices: 12345$"),
    ("page_pick", lambda image: [10**30], "^Pick a cell by what it tracks: not one of the page's choices: 1000"),
    ("page_pick_cell", lambda image: [None, "c", "abc"], "^Cell index: the page offers 0 to \\d+, not 'abc'$"),
    ("page_cell", lambda image: [None, "c", 10**30], "^Cell index: the page offers 0 to \\d+, not 1000"),
    ("load_example", lambda image: [99], "^examples: the page offers \\d+, numbered from 0, not 99$"),
    ("load_example", lambda image: [-1], "^examples: the page offers \\d+, numbered from 0, not -1$"),
    ("load_example", lambda image: ["0"], "^examples: the page offers \\d+, numbered from 0, not '0'$"),
    ("page_chat", lambda image: [image, "hello", "what is it"], "^history must be a list of messages, not 'hello'$"),
    ("page_caption", lambda image: [image, "beam", 40, 1.0, 0, 3], "^Beam size: the page offers 1 to 10, not 40$"),
    ("page_ask", lambda image: [image, ["what"], None], "^Question must be text, not a list$"),
]


@pytest.mark.parametrize(
    "api, make_data, message", PAGE_CALLS, ids=[f"{api}-{i}" for i, (api, *_) in enumerate(PAGE_CALLS)]
)
def test_the_pages_own_endpoints_refuse_what_the_page_did_not_offer(
    app_url, uploaded, new_log, api, make_data, message
):
    event, data = call_raw(app_url, api, make_data(uploaded))
    assert event == "error" and isinstance(data["error"], str), data  # not {"error": null}
    assert re.match(message, data["error"]) and "\n" not in data["error"], data["error"]
    log = new_log()
    assert "Traceback" not in log and log.count("captioner app: refused: ") == 1, log[-2000:]


def test_a_request_body_over_the_limit_is_refused_before_it_is_parsed(app_url, uploaded, new_log):
    question = "what " * (MAX_BODY_KB * 1024 // 5 + 1)  # a question a little over the limit
    body = json.dumps({"data": [uploaded, question]}).encode()
    start = time.monotonic()
    declared = httpx.post(
        f"{app_url}gradio_api/call/ask", content=body, timeout=60, headers={"Content-Type": "application/json"}
    )
    chunked = httpx.post(
        f"{app_url}gradio_api/call/ask",
        timeout=60,
        headers={"Content-Type": "application/json"},
        content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
    )  # no length given
    assert time.monotonic() - start < 20
    for response in (declared, chunked):
        assert response.status_code == 413 and f"at most {MAX_BODY_KB} kB" in response.text, response.text[:300]
    # The same for a page event (the browser's queue), and a body under the limit still gets its answer.
    queued = httpx.post(
        f"{app_url}gradio_api/queue/join",
        content=b"[" + b"0," * (MAX_BODY_KB * 512) + b"0]",
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert queued.status_code == 413
    event, data = call_raw(app_url, "ask", [uploaded, "what " * 1000])
    assert event == "error" and data["error"].startswith("Cannot answer: ")  # the model's own limit, in one line
    assert "Traceback" not in new_log()


def test_the_app_keeps_the_state_of_its_most_recent_sessions_only(app_url, uploaded, new_log):
    # Any client names its own session: each one kept used to cost about 600 kB, up to Gradio's 10,000 sessions.
    first = Client(app_url, verbose=False, analytics_enabled=False, ssl_verify=False)
    first.predict(handle_file(str(EXAMPLE)), api_name="/caption")
    assert first.predict("c", 4, api_name="/look_inside")[1] >= 0  # its caption is kept
    for _ in range(SESSIONS_KEPT):  # as many other sessions (each raw call is one), each refused at once
        assert call_raw(app_url, "cell", [None, "c", 0])[0] == "error"
    with pytest.raises(AppError, match="^Caption an image first"):  # its state dropped, the oldest
        first.predict("c", 4, api_name="/look_inside")
    first.predict(handle_file(str(EXAMPLE)), api_name="/caption")
    assert first.predict("c", 4, api_name="/look_inside")[1] >= 0
    assert "Traceback" not in new_log()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_uploads_are_removed_at_shutdown_after_a_client_called(weights_dir, tmp_path, stop):
    # With a gradio_client's call behind it (even closed), the server outlived Gradio's 5 s wait at shutdown, and
    # the upload folder, removed only by the server's own shutdown, stayed: every restart left its users' photos.
    cache = tmp_path / "gradio"
    with running_app(weights_dir, tmp_path / "app.log", env={"GRADIO_TEMP_DIR": str(cache)}) as (url, pid):
        client = Client(url, verbose=False, analytics_enabled=False, ssl_verify=False)
        client.predict(handle_file(str(EXAMPLE)), api_name="/caption")
        folders = list(cache.glob("captioner-app-*"))
        assert len(folders) == 1 and any(p.is_file() for p in folders[0].rglob("*"))
        client.close()
        os.kill(pid, stop)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):  # exited, not yet reaped
                break
            time.sleep(0.2)
        assert not folders[0].exists()
    assert "Traceback" not in (tmp_path / "app.log").read_text()
