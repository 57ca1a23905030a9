"""The demo app, running, driven through ``gradio_client``: every named endpoint, and bad input.

The app runs as ``python app.py`` on a free localhost port (see ``conftest.py``).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from conftest import EXAMPLE_IMAGE as EXAMPLE

pytestmark = pytest.mark.slow


def test_named_endpoints_are_published(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/caption", "/ask", "/look_inside", "/cell"} <= set(endpoints)


def test_caption_with_defaults_gives_text_alternatives_and_word_probabilities(client):
    text, nbest, words = client.predict(handle_file(str(EXAMPLE)), api_name="/caption")
    assert isinstance(text, str) and text
    rows = nbest["data"]
    assert 1 <= len(rows) <= 3 and rows[0][1] == text  # defaults: beam 3, three alternatives
    assert all(isinstance(log_prob, float) and log_prob < 0 for _, _, log_prob in rows)
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
    return {p.name: p for p in folder.iterdir()}


@pytest.mark.parametrize("api, make_args, message", [
    ("/caption", lambda f: [handle_file(str(f["notes.txt"]))], r"^notes\.txt: not an image file$"),
    ("/caption", lambda f: [handle_file(str(f["broken.jpg"]))], r"^broken\.jpg: "),
    ("/caption", lambda f: [handle_file(str(f["huge.png"]))], r"^huge\.png: image too large \(9000x9000 pixels\)$"),
    ("/caption", lambda f: [None], "Upload an image first"),
    ("/caption", lambda f: [handle_file(str(EXAMPLE)), "beam", 500], "beam_size must be between 1 and 10"),
    ("/ask", lambda f: [handle_file(str(EXAMPLE)), "   "], "Type a question first"),
])
def test_bad_input_gets_a_one_line_message_and_the_app_keeps_serving(client, bad_files, api, make_args, message):
    with pytest.raises(AppError, match=message) as error:
        client.predict(*make_args(bad_files), api_name=api)
    assert "\n" not in str(error.value)
    assert client.predict(handle_file(str(EXAMPLE)), api_name="/caption")[0]
