"""The demo app, running, driven through ``gradio_client``: every named endpoint, and bad input.

The app runs as ``python app.py`` on a free localhost port (see ``conftest.py``).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from conftest import EXAMPLE_IMAGE as EXAMPLE
from conftest import running_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from synthetic import draw, png_claiming_size

from captioner.chat import named_by_answer

pytestmark = pytest.mark.slow


def test_named_endpoints_are_published(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/caption", "/ask", "/chat", "/look_inside", "/cell"} <= set(endpoints)


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


@pytest.mark.parametrize("method, alternatives, expected", [("greedy", 3, 1), ("sample", 6, 6), ("beam", 5, 3)])
def test_caption_decoding_settings(client, method, alternatives, expected):
    text, nbest, _ = client.predict(handle_file(str(EXAMPLE)), method, 3, 1.5, 0, alternatives, api_name="/caption")
    assert len(nbest["data"]) == expected  # beam: alternatives are capped at the beam size
    # Ranked by score, as the table says (samples came in the order drawn), and the caption is the best of them.
    scores = [score for _, _, score, _ in nbest["data"]]
    assert scores == sorted(scores, reverse=True) and text == nbest["data"][0][1]


def test_look_inside_and_one_cell_follow_the_last_caption(client):
    _, _, words = client.predict(handle_file(str(EXAMPLE)), api_name="/caption")
    heatmap, top_cell, cell_plot, cell_words, picked, gradients = client.predict("h", 4, api_name="/look_inside")
    assert picked["value"] == top_cell == picked["choices"][0][1] and gradients["plot"].startswith("data:image/png")
    assert all(name.startswith(f"h[{index}]") for name, index in picked["choices"])  # each cell by its label
    assert heatmap["type"] == "matplotlib" and heatmap["plot"].startswith("data:image/png")
    labels = [w["token"] for w in cell_words]
    assert labels == ["<start>", *[w["token"] for w in words if w["class_or_confidence"] is not None]]
    assert all(-1 <= w["class_or_confidence"] <= 1 for w in cell_words)
    plot, _ = client.predict("c", int(top_cell), api_name="/cell")
    assert plot["plot"].startswith("data:image/png")


def test_look_inside_shows_cells_by_what_the_atlas_says_they_track(client, weights_dir):
    atlas = weights_dir / "caption" / "cells.json"
    if not atlas.exists():
        pytest.skip("weights without a cell atlas")
    cells = json.loads(atlas.read_text())["cells"]["c"]
    strongest = {
        "word": max((c["selectivity"], i) for i, c in enumerate(cells) if c["tracks"] == "word")[1],
        "position": max((abs(c["position_r"]), i) for i, c in enumerate(cells) if c["tracks"] == "position")[1],
    }
    client.predict(handle_file(str(EXAMPLE)), api_name="/caption")
    for show in ("word", "position"):
        _, top_cell, _, _, picked, _ = client.predict("c", 8, show, api_name="/look_inside")
        assert top_cell == picked["value"] == strongest[show] and cells[top_cell]["tracks"] == show
        assert picked["choices"][0] == [f"c[{top_cell}] {cells[top_cell]['label']}", top_cell]
    assert client.predict("c", 8, api_name="/look_inside")[1] == strongest["word"]  # the default
    with pytest.raises(AppError, match="^show must be one of word, position, not 'quotes'"):
        client.predict("c", 8, "quotes", api_name="/look_inside")


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


def test_ask_with_choices_gives_every_choice_a_probability(client, has_vqa):
    if not has_vqa:
        pytest.skip("needs VQA weights")
    answers = client.predict(
        handle_file(str(EXAMPLE)), "What sport is this?", r"tennis|base\|ball|golf|soccer", api_name="/ask"
    )
    confidences = {c["label"]: c["confidence"] for c in answers["confidences"]}
    assert set(confidences) == {"tennis", "base|ball", "golf", "soccer"}
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-4) and min(confidences.values()) > 0
    with pytest.raises(AppError, match=r"^Bad choices: choice 2 of 3 is blank$"):
        client.predict(handle_file(str(EXAMPLE)), "What sport is this?", "tennis||golf", api_name="/ask")


def test_a_chat_opens_with_the_caption_and_reads_a_pronoun_as_the_last_subject(client, has_vqa):
    if not has_vqa:
        pytest.skip("needs VQA weights")
    caption = client.predict(handle_file(str(EXAMPLE)), api_name="/caption")[0]
    history, box = client.predict(handle_file(str(EXAMPLE)), [], "Is there a dog in the picture?", api_name="/chat")
    # The messages as docs/guide.md shows them: {"role", "content": text}, not Gradio's list of parts.
    assert box == "" and all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in history)
    assert [m["role"] for m in history] == ["assistant", "user", "assistant"]
    assert history[0]["content"] == caption and history[1]["content"] == "Is there a dog in the picture?"
    assert re.fullmatch(r".+ \(\d+%\)( \(not sure\))?", history[2]["content"])  # the answer and its probability
    history, _ = client.predict(handle_file(str(EXAMPLE)), history, "what color is it?", api_name="/chat")
    assert len(history) == 5 and history[4]["content"].endswith("(read as: what color is the dog?)")
    # An answer that names a thing is what "it" stands for next (issue 41): a bat, a racket...; otherwise the man.
    history, _ = client.predict(handle_file(str(EXAMPLE)), history, "what is the man holding?", api_name="/chat")
    held = named_by_answer(history[-1]["content"]) or "the man"
    history, _ = client.predict(handle_file(str(EXAMPLE)), history, "is it big?", api_name="/chat")
    assert history[-1]["content"].endswith(f"(read as: is {held} big?)"), history[-1]["content"]
    for bad, message in (
        (["hi"], "history message 1 must be"),
        ({"a": 1}, "history must be a list"),
        ([{"role": "user", "content": "x"}] * 201, "history holds 201 messages; at most 200"),
    ):
        with pytest.raises(AppError, match="^" + re.escape(message)) as error:
            client.predict(handle_file(str(EXAMPLE)), bad, "what is it?", api_name="/chat")
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "history",
    [
        [{"role": "user", "content": "what is it?"}, {"role": "assistant", "content": "a ball"}] * 99
        + [{"role": "user", "content": "and now?"}],  # 199 messages: under the limit of 200
        [{"role": "user", "content": "<b>bold</b> <script>alert(1)</script> <img src=x onerror=alert(1)>"}],
        [{"role": "user", "content": "hello", "metadata": {"title": "x"}, "options": [], "extra": 1}],
        [{"role": "assistant", "content": [{"type": "text", "text": "a cat"}, {"type": "text", "text": "on a mat"}]}],
    ],
    ids=["199 messages", "HTML", "extra keys", "text parts"],
)
def test_chat_takes_any_history_of_text_messages_in_plain_text(client, has_vqa, new_log, history):
    # Gradio's own check refused plain-text content ({"error": null}, a traceback in the log) (issue 38).
    if not has_vqa:
        pytest.skip("needs VQA weights")
    out, _ = client.predict(handle_file(str(EXAMPLE)), history, "what color is it?", api_name="/chat")
    assert len(out) == len(history) + 2 and all(set(m) == {"role", "content"} for m in out)
    assert out[0]["content"] == messages_text(history[0]) and out[-2]["content"] == "what color is it?"
    assert "Traceback" not in new_log()


def messages_text(message: dict) -> str:
    """A message's text as the app reads it: its text, or its text parts joined by spaces."""
    content = message["content"]
    return content if isinstance(content, str) else " ".join(part["text"] for part in content)


# What a message about an unusable image says about the limits (images.MAX_PIXELS and app.MAX_FILE_MB).
IMAGE_LIMITS_NOTE = r"\(this app reads images of up to 80 megapixels and 25 MB\)"


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    Image.new("1", (9000, 9000)).save(folder / "huge.png")  # 81 megapixels in a 10 kB file
    png_claiming_size(folder / "bomb.png", 10000, 9000)  # 90 megapixels: past PIL's decompression-bomb warning
    return {p.name: p for p in folder.iterdir()}


@pytest.mark.parametrize(
    "api, make_args, message",
    [
        (
            "/caption",
            lambda f: [handle_file(str(f["notes.txt"]))],
            rf"^notes\.txt: not an image file {IMAGE_LIMITS_NOTE}$",
        ),
        ("/caption", lambda f: [handle_file(str(f["broken.jpg"]))], r"^broken\.jpg: "),
        (
            "/caption",
            lambda f: [handle_file(str(f["huge.png"]))],
            rf"^huge\.png: image too large \(9000x9000 pixels.*{IMAGE_LIMITS_NOTE}$",
        ),
        (
            "/caption",
            lambda f: [handle_file(str(f["bomb.png"]))],
            rf"^bomb\.png: image too large \(10000x9000 pixels.*{IMAGE_LIMITS_NOTE}$",
        ),
        ("/caption", lambda f: [None], "Upload an image first"),
        (
            "/caption",
            lambda f: [handle_file(str(EXAMPLE)), "beam", 500],
            r"^Bad decoding settings: beam_size must be at least 1 and at most 50, not 500$",
        ),
        ("/ask", lambda f: [handle_file(str(EXAMPLE)), "   "], "Type a question first"),
    ],
)
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
    return {
        "an image": str(folder / "private.png"),
        "a text file": str(folder / "notes.txt"),
        "a folder": str(folder),
        "a missing file": str(folder / "missing.jpg"),
        "a FIFO": str(folder / "fifo"),
        "stdin": "/dev/stdin",
        "out of examples/ by ..": str(EXAMPLE.parent / ".." / "weights" / "caption" / "config.json"),
        "a NUL byte": "examples/\0tennis.jpg",
        "relative": "examples/../README.md",
    }


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


def upload(app_url: str, *files: tuple[str, bytes]) -> httpx.Response:
    """One POST to Gradio's upload route, as any HTTP client can send it."""
    return httpx.post(f"{app_url}gradio_api/upload", files=[("files", file) for file in files], timeout=60)


@pytest.fixture(scope="module")
def uploaded(app_url) -> dict:
    """An image uploaded to the app, as an API call names it."""
    response = upload(app_url, ("tennis.jpg", EXAMPLE.read_bytes()))
    return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}


def test_the_pages_caption_opens_the_chat_with_that_same_caption(app_url, uploaded):
    # Issue 38: the page's caption event itself opens the conversation, with the caption it shows; before, an event
    # after the Look-inside plots read the caption box seconds later, and the two could disagree after sampling.
    for method in ("sample", "beam"):
        event, data = call_raw(app_url, "page_caption", [uploaded, method, 3, 1.0, 0, 3])
        assert event == "complete", data
        text, table, *_, history = data
        assert text == table["data"][0][1]  # the best of the samples drawn, ranked by score
        assert [(m["role"], m["content"][0]["text"]) for m in history] == [("assistant", text)]


def test_a_panorama_gets_a_not_sure_badge_that_says_why(app_url):
    wide = io.BytesIO()
    Image.open(EXAMPLE).convert("RGB").resize((2000, 400)).save(wide, "PNG")  # 5 to 1: squashed for the model
    panorama = {"path": upload(app_url, ("wide.png", wide.getvalue())).json()[0], "meta": {"_type": "gradio.FileData"}}
    event, data = call_raw(app_url, "page_caption", [panorama, "beam", 3, 1.0, 0, 3])
    assert event == "complete" and data[4].startswith('<span class="not-sure">not sure</span> 5.0 times wider than')


def test_the_ask_tab_shows_where_an_existence_answer_was_seen_and_nothing_for_other_answers(app_url, uploaded):
    # Issue 41: an answer the concept detectors gave shows the photo, darkened away from where they saw the object.
    event, data = call_raw(app_url, "page_ask", [uploaded, "Are there any people?", ""])
    assert event == "complete", data
    _, why, shown = data
    if "<b>person</b>" not in why:
        pytest.skip("needs weights with concepts/")
    assert shown["visible"] is True and "person detector" in shown["label"]
    with urllib.request.urlopen(shown["value"]["url"], timeout=60) as response:
        highlight = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"), dtype=np.float64)
    photo = np.asarray(Image.open(EXAMPLE).convert("RGB"), dtype=np.float64)
    assert highlight.shape == photo.shape  # 480 x 320: the photo as the app loads it
    assert 0.25 * photo.mean() < highlight.mean() < 0.9 * photo.mean()  # darkened away from the person, not all
    for question, choices in (("What sport is this?", ""), ("Is there a dog?", "yes | no")):
        event, data = call_raw(app_url, "page_ask", [uploaded, question, choices])
        assert event == "complete" and "evidence" not in data[1], data
        assert data[2] == {"__type__": "update", "visible": False, "value": None}  # hidden, and emptied


def test_server_paths_in_any_form_get_the_apps_one_refusal(app_url, server_paths, uploaded, new_log):
    marked = {"_type": "gradio.FileData"}
    upload_file = Path(uploaded["path"])  # in its own folder, in the app's upload folder
    paths = [server_paths[name] for name in ("an image", "a folder", "a missing file", "a FIFO")]
    paths += [str(upload_file.parent), str(upload_file.parent.parent)]  # never a folder, nor the uploads' own
    forms = [
        form
        for path in paths
        for form in (
            {"path": path, "meta": marked},
            {"path": path, "url": "http://127.0.0.1:9/x", "meta": marked},
            path,
            [path],
        )
    ]
    answers = [call_raw(app_url, "caption", [form, "beam", 3, 1.0, 0, 3]) for form in forms]
    assert all(answer == ("error", answers[0][1]) for answer in answers), answers
    assert answers[0][1]["error"].startswith("Upload the image again: this app reads only images")
    log = new_log()
    assert "Traceback" not in log and log.count("captioner app: refused: ") == len(forms)


# A long value, under the limit on a request body (guards.MAX_BODY_KB; a larger body is refused before it is read,
# see test_app_limits.py).
LONG = "x" * 500_000


@pytest.mark.parametrize(
    "api, make_data, message",
    [
        ("caption", lambda image: [], "^caption takes 6 inputs, not 0$"),
        ("caption", lambda image: [image], "^caption takes 6 inputs, not 1$"),
        ("ask", lambda image: [], "^ask takes 3 inputs, not 0$"),
        ("ask", lambda image: [image], "^ask takes 3 inputs, not 1$"),  # its third, the choices, may be left out
        ("ask", lambda image: [image, "what sport is this?", LONG], "^Bad choices: the choices are too long "),
        ("chat", lambda image: [image, []], "^chat takes 3 inputs, not 2$"),
        (
            "chat",
            lambda image: [
                image,
                [{"role": "user", "content": [{"type": "file", "file": {"path": "/etc/passwd"}}]}],
                "what is it",
            ],
            "^history message 1 must be ",
        ),  # never read as a file
        ("chat", lambda image: [image, "hi", "what is it"], "^history must be a list of messages, not 'hi'$"),
        ("ask", lambda image: [image, {"q": "what"}], "^question must be text, not a dict$"),
        ("ask", lambda image: [image, ["what"]], "^question must be text, not a list$"),
        ("ask", lambda image: [image, 5], "^question must be text, not 5$"),
        ("caption", lambda image: [image, LONG, 3, 1.0, 0, 3], "^method must be one of .*, not 'xxx+'...$"),
        ("caption", lambda image: [image, "beam", LONG, 1.0, 0, 3], "^beam_size must be a number, not 'xxx+'...$"),
        ("caption", lambda image: [image, {"beam": 1}, 3, 1.0, 0, 3], "^method must be one of .*, not a dict$"),
    ],
)
def test_raw_calls_get_the_apps_one_line_reason_and_the_log_one_line(
    app_url, uploaded, new_log, api, make_data, message
):
    event, data = call_raw(app_url, api, make_data(uploaded))
    assert event == "error" and isinstance(data["error"], str), data  # not {"error": null}
    assert re.match(message, data["error"]) and len(data["error"]) < 200, data["error"][:300]
    log = new_log()
    assert "Traceback" not in log and log.count("captioner app: refused: ") == 1, log[-2000:]


def test_an_upload_request_carries_one_file_of_25_mb_at_most(app_url):
    image = EXAMPLE.read_bytes()
    assert upload(app_url, ("one.jpg", image)).status_code == 200
    refused = upload(app_url, ("first.jpg", image), ("second.jpg", image))
    assert refused.status_code == 413 and "at most 1 file(s), 25 MB in all" in refused.text
    too_big = b"x" * (25 * 2**20 + 2**16)  # declared as such in Content-Length, or sent in chunks without it
    assert upload(app_url, ("big.jpg", too_big)).status_code == 413
    chunks = (too_big[i : i + 2**20] for i in range(0, len(too_big), 2**20))
    boundary = "b0undary"
    body = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\n\r\n'.encode(),
        *chunks,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    chunked = httpx.post(
        f"{app_url}gradio_api/upload",
        content=iter(body),
        timeout=60,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert chunked.status_code == 413
    stored = {p.name for p in Path(upload(app_url, ("one.jpg", image)).json()[0]).parent.parent.rglob("*")}
    assert not stored & {"first.jpg", "second.jpg", "big.jpg"}


def test_monitoring_is_off_by_default(app_url, app_log):
    assert httpx.get(f"{app_url}monitoring/summary").status_code == 403
    assert httpx.get(f"{app_url}monitoring").status_code == 403
    assert "Monitoring URL" not in app_log.read_text()


def test_the_startup_log_names_the_share_option(app_url, app_log):
    log = app_log.read_text()
    assert "start it with --share true" in log and "share=True" not in log


IMAGE_ARGS = [handle_file(str(EXAMPLE))]
ODD_CALLS = (  # (endpoint, arguments): each must be refused with a one-line message
    [
        ("/caption", [None]),
        ("/caption", [{}]),
        ("/caption", [{"url": "http://example.com/x.jpg"}]),
        ("/ask", [None, "what is it"]),
        ("/ask", [*IMAGE_ARGS, None]),
        ("/ask", [*IMAGE_ARGS, "?!"]),
        ("/ask", [*IMAGE_ARGS, "what is it", ["a", "b"]]),
        ("/ask", [*IMAGE_ARGS, "what is it", "a|" * 101]),
        ("/chat", [None, [], "what is it"]),
        ("/chat", [*IMAGE_ARGS, [], None]),
        ("/chat", [*IMAGE_ARGS, 5, "what"]),
        ("/chat", [*IMAGE_ARGS, [{"role": "user", "content": "x" * 2001}], "what is it"]),
    ]
    + [("/caption", [*IMAGE_ARGS, method]) for method in ("nope", 5, ["beam"])]
    + [("/caption", [*IMAGE_ARGS, "beam", value]) for value in (0, 51, -1, "x", "nan", 1e300)]
    + [("/caption", [*IMAGE_ARGS, "sample", 3, value]) for value in (0, 101, "x", "nan", "inf", -1)]
    + [("/caption", [*IMAGE_ARGS, "sample", 3, 1.0, value]) for value in (-1, 1_000_001, "x", 0.5e9)]
    + [("/caption", [*IMAGE_ARGS, "beam", 3, 1.0, 0, value]) for value in (0, 51, "x", {})]
    + [("/look_inside", [kind, 4]) for kind in ("q", 5, None)]
    + [("/look_inside", ["c", cells]) for cells in (0, 65, "x", None)]
    + [("/look_inside", ["c", 4, show]) for show in ("quotes", 5, ["word"])]
    + [("/cell", ["c", index]) for index in (-1, 10**6, "x", None, "1e999")]
)


@pytest.mark.parametrize(
    "api, args",
    ODD_CALLS,
    ids=[f"{api}{['IMAGE' if a is IMAGE_ARGS[0] else a for a in args]!r}" for api, args in ODD_CALLS],
)
def test_odd_api_values_get_one_line_errors_and_no_traceback(client, new_log, api, args):
    client.predict(*IMAGE_ARGS, api_name="/caption")  # so /look_inside and /cell have a caption to look at
    with pytest.raises(AppError) as error:
        client.predict(*args, api_name=api)
    assert str(error.value) and "\n" not in str(error.value)
    assert "Traceback" not in new_log()


def abandon_upload(app_url: str) -> None:
    """Start an upload and walk away: the server has stored its first bytes when this returns."""
    url = urlparse(app_url)
    part = b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="slow.png"\r\n\r\n' + b"x" * 10_000
    with socket.create_connection((url.hostname, url.port)) as s:
        s.sendall(
            b"POST /gradio_api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n"
            b"Content-Type: multipart/form-data; boundary=b0undary\r\n\r\n" + part
        )
        time.sleep(1)


def test_uploads_are_deleted_after_a_while_and_at_shutdown_whatever_a_request_sends(weights_dir, tmp_path):
    cache = tmp_path / "gradio"
    for color in ("red", "blue", "green"):
        draw(color, "circle").save(tmp_path / f"{color}.png")

    def cached(name: str = "*") -> list[Path]:
        return [p for p in cache.rglob(name) if p.is_file()]

    def wait_until_gone(name: str) -> None:
        deadline = time.monotonic() + 60
        while cached(name) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not cached(name)

    log = tmp_path / "app.log"
    with running_app(
        weights_dir, log, cache_cleanup=(1, 2), env={"GRADIO_TEMP_DIR": str(cache)}, args=["--monitoring", "true"]
    ) as (url, _):
        client = Client(url, verbose=False, analytics_enabled=False, ssl_verify=False)
        client.predict(handle_file(str(tmp_path / "red.png")), api_name="/caption")
        assert cached("red.png")
        wait_until_gone("red.png")  # deleted while the app runs, once older than 2 s
        # A request naming the upload folder itself (every upload response shows its path) is refused, and the
        # cleanup goes on: with Gradio's own, the folder was recorded for deletion and stopped it.
        uploads = Path(upload(url, ("tennis.jpg", EXAMPLE.read_bytes())).json()[0]).parent.parent
        for folder in (uploads, uploads.parent):
            event, data = call_raw(
                url, "caption", [{"path": str(folder), "meta": {"_type": "gradio.FileData"}}, "beam", 3, 1.0, 0, 3]
            )
            assert event == "error" and data["error"].startswith("Upload the image again")
        time.sleep(3)  # a few cleanups later
        client.predict(handle_file(str(tmp_path / "blue.png")), api_name="/caption")
        assert cached("blue.png")
        wait_until_gone("blue.png")
        before = set(cached())
        abandon_upload(url)
        partial = set(cached()) - before
        assert partial  # what the abandoned upload left, removed as old as well
        deadline = time.monotonic() + 60
        while partial & set(cached()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not partial & set(cached())
        assert httpx.get(f"{url}monitoring/summary").status_code == 200  # --monitoring true turns it on
        client.predict(handle_file(str(tmp_path / "green.png")), api_name="/caption")
        assert cached("green.png")
    assert not cached()  # all deleted when the app stops (SIGTERM), cleanly
    text = log.read_text()
    assert "Traceback" not in text and "shutdown failed" not in text and "IsADirectoryError" not in text
