"""The "not sure" calibration: the isotonic fit, the threshold it gives, and the marks results carry in every
output (text, jsonl, csv, ``ask --batch``, the app's badge)."""

import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE_IMAGE

from captioner.app.page import badge
from captioner.cli.main import main
from captioner.confidence import caption_confidence, is_sure
from captioner.train.calibrate import held_out_report, isotonic_fit, split_report, threshold


def test_isotonic_fit_pools_violators_and_is_monotone():
    xs, fitted = isotonic_fit([0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 0.0, 1.0])
    assert xs.tolist() == [0.1, 0.2, 0.3, 0.4]
    assert fitted.tolist() == [0.0, 0.5, 0.5, 1.0]  # the 1, 0 pair is pooled into its mean
    rng = np.random.default_rng(0)
    x = rng.random(500)
    y = (rng.random(500) < x).astype(float)
    xs, fitted = isotonic_fit(x, y)
    assert np.all(np.diff(fitted) >= 0) and np.all(np.diff(xs) >= 0)
    assert fitted.mean() == pytest.approx(y.mean())  # pooling keeps the total


def test_threshold_is_where_the_fit_reaches_the_target():
    # Right iff confidence > 0.6: the fitted accuracy jumps from 0 to 1 there.
    confidence = np.linspace(0.01, 1.0, 100)
    quality = (confidence > 0.6).astype(float)
    t = threshold(confidence, quality, 0.5)
    assert 0.6 < t <= 0.62
    report = split_report(confidence, quality, t)
    assert report["sure quality"] == 1.0 and report["not sure quality"] == 0.0
    assert threshold(confidence, np.zeros(100), 0.5) == 1.0  # never good enough: everything is not sure
    with pytest.raises(ValueError):
        threshold([], [], 0.5)


def test_held_out_report_separates_on_unseen_halves():
    rng = np.random.default_rng(1)
    confidence = rng.random(400)
    quality = (rng.random(400) < confidence).astype(float)
    report = held_out_report(confidence, quality, [f"img{i // 2}" for i in range(400)], 0.5)
    assert report["sure quality"] > report["not sure quality"] + 0.2


def test_caption_confidence_and_marks():
    assert caption_confidence(2 * math.log(0.5), 1) == pytest.approx(0.5)  # one word and <end>, each at 0.5
    assert is_sure(0.4, None) is None
    assert is_sure(0.4, 0.5) is False and is_sure(0.5, 0.5) is True


def _weights_with(
    weights_dir: Path, folder: Path, caption: float | None, answer: float | None, yes_no: float | None = None
) -> Path:
    """A copy of the test weights whose config.json records these "not sure" thresholds (None: no threshold)."""
    for task, thresholds in (("caption", {"caption": caption}), ("vqa", {"answer": answer, "yes_no": yes_no})):
        if not (weights_dir / task).exists():
            continue
        shutil.copytree(weights_dir / task, folder / task)
        config = json.loads((folder / task / "config.json").read_text())
        config.pop("confidence", None)
        if any(v is not None for v in thresholds.values()):
            config["confidence"] = {k: v for k, v in thresholds.items() if v is not None}
        (folder / task / "config.json").write_text(json.dumps(config))
    if (weights_dir / "concepts").exists():  # what the VQA weights read beside the image
        shutil.copytree(weights_dir / "concepts", folder / "concepts")
    return folder


def _run(capsys, argv: list[str]) -> str:
    assert main([*argv, "--quiet"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("caption_threshold, marked", [(1.0, True), (0.0, False), (None, False)])
def test_captions_below_the_threshold_are_marked_in_every_format(
    weights_dir, tmp_path, capsys, caption_threshold, marked
):
    weights = str(_weights_with(weights_dir, tmp_path / "w", caption_threshold, None))
    image = str(EXAMPLE_IMAGE)
    text = _run(capsys, ["caption", image, "--weights", weights, "--n-best", "2"]).splitlines()[1:]
    assert len(text) == 2 and all(line.endswith(" (not sure)") == marked for line in text)
    record = json.loads(_run(capsys, ["caption", image, "--weights", weights, "--format", "jsonl"]))
    words = len(record["caption"].split())
    assert record["confidence"] == pytest.approx(math.exp(record["log_prob"] / (words + 1)), abs=1e-3)
    assert record["sure"] == (None if caption_threshold is None else not marked) == record["n_best"][0]["sure"]
    assert "(not sure)" not in record["caption"]  # the mark is the text output's; jsonl has the field
    rows = list(csv.DictReader(io.StringIO(_run(capsys, ["caption", image, "--weights", weights, "--format", "csv"]))))
    assert rows[0]["sure"] == {None: "", 1.0: "false", 0.0: "true"}[caption_threshold]
    assert float(rows[0]["confidence"]) == pytest.approx(record["confidence"], abs=1e-4)


def test_only_the_top_answer_below_the_threshold_is_marked(weights_dir, has_vqa, tmp_path, capsys):
    if not has_vqa:
        pytest.skip("needs weights with vqa/")
    unsure = str(_weights_with(weights_dir, tmp_path / "unsure", None, 1.0))
    lines = _run(capsys, ["ask", str(EXAMPLE_IMAGE), "what sport is this?", "--weights", unsure]).splitlines()
    assert lines[0].endswith(" (not sure)")
    assert not any("not sure" in line for line in lines[1:])
    sure = str(_weights_with(weights_dir, tmp_path / "sure", None, 0.0))
    assert "not sure" not in _run(capsys, ["ask", str(EXAMPLE_IMAGE), "what sport is this?", "--weights", sure])
    (tmp_path / "images").mkdir()
    shutil.copy(EXAMPLE_IMAGE, tmp_path / "images" / "1.jpg")
    (tmp_path / "qa.csv").write_text("image_id,question\n1,what sport is this?\n")
    for weights, expected in ((unsure, "false"), (sure, "true")):
        out = _run(
            capsys,
            ["ask", "--batch", str(tmp_path / "qa.csv"), "--images", str(tmp_path / "images"), "--weights", weights],
        )
        assert next(csv.DictReader(io.StringIO(out)))["sure"] == expected


def test_a_yes_or_no_has_its_own_threshold_when_the_weights_record_one(weights_dir, has_vqa, tmp_path):
    if not has_vqa:
        pytest.skip("needs weights with vqa/")
    from captioner.pipeline import VQAPredictor

    strict = VQAPredictor.from_pretrained(_weights_with(weights_dir, tmp_path / "strict", None, 0.5, 0.9))
    assert strict.sure(0.8, "yes") is False and strict.sure(0.8, "no") is False and strict.sure(0.95, "no") is True
    assert strict.sure(0.8, "tennis") is True and strict.sure(0.4, "tennis") is False
    assert strict.sure(0.8) is True  # an answer not given: the answer threshold
    plain = VQAPredictor.from_pretrained(_weights_with(weights_dir, tmp_path / "plain", None, 0.5))
    assert plain.sure(0.8, "yes") is True  # no yes_no threshold: the answer one holds for yes and no too


def test_the_app_badge_shows_for_not_sure_results_only():
    assert "not sure" in badge(False, "caption") and "wrong" in badge(False, "answer")
    assert badge(True, "caption") == badge(None, "answer") == ""


def test_multiple_choice_is_not_marked_and_a_chat_answer_below_the_threshold_is(weights_dir, has_vqa, tmp_path, capsys):
    if not has_vqa:
        pytest.skip("needs weights with vqa/")
    from captioner.app.handlers import Demo
    from captioner.pipeline import Captioner

    unsure = _weights_with(weights_dir, tmp_path / "unsure", None, 1.0)
    out = _run(
        capsys, ["ask", str(EXAMPLE_IMAGE), "what sport is this?", "--choices", "tennis|golf", "--weights", str(unsure)]
    )
    assert len(out.splitlines()) == 2 and "not sure" not in out  # the threshold is not calibrated on choices
    image = {"path": str(EXAMPLE_IMAGE)}
    for weights, marked in ((unsure, True), (_weights_with(weights_dir, tmp_path / "sure", None, 0.0), False)):
        demo = Demo(Captioner.from_pretrained(weights, precision="fp32"))
        history, _ = demo.chat(image, [{"role": "assistant", "content": "a man playing tennis"}], "what sport is this?")
        assert history[-1]["content"].endswith("%) (not sure)") == marked
