"""The demo app, running, driven through ``gradio_client``: every named endpoint, and bad input.

The app runs as ``python app.py`` on a free localhost port (see ``conftest.py``).
"""
from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from conftest import EXAMPLE_IMAGE as EXAMPLE
from conftest import running_app
from synthetic import draw, png_claiming_size

pytestmark = pytest.mark.slow


def test_named_endpoints_are_published(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/caption", "/ask", "/look_inside", "/cell"} <= set(endpoints)


def test_caption_with_defaults_gives_text_alternatives_and_word_probabilities(client):
    text, nbest, words = client.predict(handle_file(str(EXAMPLE)), api_name="/caption")
    assert isinstance(text, str) and text
    rows = nbest["data"]
    assert nbest["headers"] == ["rank", "caption", "score", "log-prob"]
    assert 1 <= len(rows) <= 3 and rows[0][1] == text  # defaults: beam 3, three alternatives
    assert all(isinstance(log_prob, float) and log_prob < 0 for *_, log_prob in rows)
    # The ranks follow the score shown beside them (what beam search ranks by), best first.
    assert [rank for rank, *_ in rows] == list(range(1, len(rows) + 1))
    assert [score for _, _, score, _ in rows] == sorted((score for _, _, score, _ in rows), reverse=True)
    scored = [w for w in words if w["class_or_confidence"] is not None]
    assert scored and all(0 < w["class_or_confidence"] <= 1 for w in scored)


@pytest.mark.parametrize("method, alternatives, expected", [("greedy", 3, 1), ("sample", 4, 4), ("beam", 5, 3)])
def test_caption_decoding_settings(client, method, alternatives, expected):
    _, nbest, _ = client.predict(handle_file(str(EXAMPLE)), method, 3, 0.8, 5, alternatives, api_name="/caption")
    assert len(nbest["data"]) == expected  # beam: alternatives are capped at the beam size


def test_look_inside_and_one_cell_follow_the_last_caption(client):
    _, _, words = client.predict(handle_file(str(EXAMPLE)), api_name="/caption")
    heatmap, top_cell, cell_plot, cell_words = client.predict("h", 4, api_name="/look_inside")
    assert heatmap["type"] == "matplotlib" and heatmap["plot"].startswith("data:image/png")
    labels = [w["token"] for w in cell_words]
    assert labels == ["<start>", *[w["token"] for w in words if w["class_or_confidence"] is not None]]
    assert all(-1 <= w["class_or_confidence"] <= 1 for w in cell_words)
    plot, _ = client.predict("c", int(top_cell), api_name="/cell")
    assert plot["plot"].startswith("data:image/png")


def test_ask_answers_or_says_the_vqa_weights_are_missing(client, has_vqa):
    if not has_vqa:
        with pytest.raises(AppError, match="VQA weights are missing"):
            client.predict(handle_file(str(EXAMPLE)), "What is the man holding?", api_name="/ask")
        return
    answers = client.predict(handle_file(str(EXAMPLE)), "What is the man holding?", api_name="/ask")
    confidences = answers["confidences"]
    assert 1 <= len(confidences) <= 5 and answers["label"] == confidences[0]["label"]
    assert sum(c["confidence"] for c in confidences) <= 1 + 1e-6
    with pytest.raises(AppError, match="^Cannot answer: "):  # the VQA model's own check: no words
        client.predict(handle_file(str(EXAMPLE)), "???", api_name="/ask")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    Image.new("1", (9000, 9000)).save(folder / "huge.png")  # 81 megapixels in a 10 kB file
    png_claiming_size(folder / "bomb.png", 10000, 9000)  # 90 megapixels: past PIL's decompression-bomb warning
    return {p.name: p for p in folder.iterdir()}


@pytest.mark.parametrize("api, make_args, message", [
    ("/caption", lambda f: [handle_file(str(f["notes.txt"]))], r"^notes\.txt: not an image file$"),
    ("/caption", lambda f: [handle_file(str(f["broken.jpg"]))], r"^broken\.jpg: "),
    ("/caption", lambda f: [handle_file(str(f["huge.png"]))], r"^huge\.png: image too large \(9000x9000 pixels\)$"),
    ("/caption", lambda f: [handle_file(str(f["bomb.png"]))], r"^bomb\.png: image too large \(10000x9000 pixels\)$"),
    ("/caption", lambda f: [None], "Upload an image first"),
    ("/caption", lambda f: [handle_file(str(EXAMPLE)), "beam", 500], r"^Bad decoding settings: beam_size must be at least 1 and at most 50, not 500$"),
    ("/ask", lambda f: [handle_file(str(EXAMPLE)), "   "], "Type a question first"),
])
def test_bad_input_gets_a_one_line_message_and_the_app_keeps_serving(client, bad_files, api, make_args, message):
    with pytest.raises(AppError, match=message) as error:
        client.predict(*make_args(bad_files), api_name=api)
    assert "\n" not in str(error.value)
    assert client.predict(handle_file(str(EXAMPLE)), api_name="/caption")[0]


# ---------------------------------------------------------------- what the API may read (issue 18)


def call_raw(app_url: str, api: str, data: list) -> tuple[str, Any]:
    """An API call as any HTTP client can make it, past gradio_client's file handling: the event it ends with
    ("complete" or "error") and that event's data."""
    base = f"{app_url}gradio_api/call/{api}"
    request = urllib.request.Request(base, json.dumps({"data": data}).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        event_id = json.load(response)["event_id"]
    with urllib.request.urlopen(f"{base}/{event_id}", timeout=60) as response:  # a stalled app times out here
        text = response.read().decode()
    event = re.search(r"^event: (\w+)$", text, re.M).group(1)
    return event, json.loads(re.search(r"^data: (.*)$", text, re.M).group(1))


@pytest.fixture(scope="module")
def server_paths(tmp_path_factory) -> dict[str, str]:
    """Paths on the server that an API call must not get read: a readable image among them."""
    folder = tmp_path_factory.mktemp("server")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(folder / "private.png")
    (folder / "notes.txt").write_text("secret")
    os.mkfifo(folder / "fifo")  # opening it would block until someone writes
    return {"an image": str(folder / "private.png"), "a text file": str(folder / "notes.txt"),
            "a folder": str(folder), "a missing file": str(folder / "missing.jpg"), "a FIFO": str(folder / "fifo"),
            "stdin": "/dev/stdin", "out of examples/ by ..": str(EXAMPLE.parent / ".." / "weights" / "caption"
                                                                  / "config.json"),
            "a NUL byte": "examples/\0tennis.jpg", "relative": "examples/../README.md"}


@pytest.mark.parametrize("api", ["caption", "ask"])
def test_the_api_reads_no_server_file_and_answers_every_path_alike(app_url, server_paths, new_log, api):
    question = ["what is it"] if api == "ask" else ["beam", 3, 1.0, 0, 3]
    answers = {name: call_raw(app_url, api, [{"path": path}, *question]) for name, path in server_paths.items()}
    refusals = {json.dumps(answer) for answer in answers.values()}
    assert len(refusals) == 1, answers  # one refusal, whatever the path names: nothing to learn from it
    event, data = answers["an image"]
    assert event == "error" and data["error"].startswith("Upload the image again: this app reads only images")
    assert "Traceback" not in new_log()
    event, data = call_raw(app_url, "caption", [{"path": str(EXAMPLE)}, "beam", 3, 1.0, 0, 3])  # the app's examples
    assert event == "complete" and data[0]


def test_paths_marked_as_uploads_are_refused_alike_by_gradio(app_url, server_paths):
    marked = [call_raw(app_url, "caption", [{"path": server_paths[name], "meta": {"_type": "gradio.FileData"}},
                                            "beam", 3, 1.0, 0, 3]) for name in ("an image", "a missing file", "a FIFO")]
    assert marked[0][0] == "error" and marked.count(marked[0]) == 3


IMAGE_ARGS = [handle_file(str(EXAMPLE))]
ODD_CALLS = (  # (endpoint, arguments): each must be refused with a one-line message
    [("/caption", [None]), ("/caption", [{}]), ("/caption", [{"url": "http://example.com/x.jpg"}]),
     ("/ask", [None, "what is it"]), ("/ask", [*IMAGE_ARGS, None]), ("/ask", [*IMAGE_ARGS, "?!"])]
    + [("/caption", [*IMAGE_ARGS, method]) for method in ("nope", 5, ["beam"])]
    + [("/caption", [*IMAGE_ARGS, "beam", value]) for value in (0, 51, -1, "x", "nan", 1e300)]
    + [("/caption", [*IMAGE_ARGS, "sample", 3, value]) for value in (0, 101, "x", "nan", "inf", -1)]
    + [("/caption", [*IMAGE_ARGS, "sample", 3, 1.0, value]) for value in (-1, 1_000_001, "x", 0.5e9)]
    + [("/caption", [*IMAGE_ARGS, "beam", 3, 1.0, 0, value]) for value in (0, 51, "x", {})]
    + [("/look_inside", [kind, 4]) for kind in ("q", 5, None)]
    + [("/look_inside", ["c", cells]) for cells in (0, 65, "x", None)]
    + [("/cell", ["c", index]) for index in (-1, 10**6, "x", None, "1e999")]
)


@pytest.mark.parametrize("api, args", ODD_CALLS, ids=[
    f"{api}{['IMAGE' if a is IMAGE_ARGS[0] else a for a in args]!r}" for api, args in ODD_CALLS])
def test_odd_api_values_get_one_line_errors_and_no_traceback(client, new_log, api, args):
    client.predict(*IMAGE_ARGS, api_name="/caption")  # so /look_inside and /cell have a caption to look at
    with pytest.raises(AppError) as error:
        client.predict(*args, api_name=api)
    assert str(error.value) and "\n" not in str(error.value)
    assert "Traceback" not in new_log()


@pytest.mark.slow
def test_uploads_are_deleted_after_a_while_and_at_shutdown(weights_dir, tmp_path):
    cache = tmp_path / "gradio"
    for color in ("red", "blue"):
        draw(color, "circle").save(tmp_path / f"{color}.png")

    def cached(name: str) -> list[Path]:
        return [p for p in cache.rglob(name) if p.is_file()]

    with running_app(weights_dir, tmp_path / "app.log", cache_cleanup=(1, 2),
                     env={"GRADIO_TEMP_DIR": str(cache)}) as (url, _):
        client = Client(url, verbose=False, analytics_enabled=False, ssl_verify=False)
        client.predict(handle_file(str(tmp_path / "red.png")), api_name="/caption")
        assert cached("red.png")
        deadline = time.monotonic() + 60
        while cached("red.png") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not cached("red.png")  # deleted while the app runs, once older than 2 s
        client.predict(handle_file(str(tmp_path / "blue.png")), api_name="/caption")
        assert cached("blue.png")
    assert not cached("blue.png")  # deleted when the app stops (SIGTERM)
