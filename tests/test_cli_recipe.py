"""The steps that finish a weights folder as ``captioner`` commands (issue 37): ``questions``, ``atlas``,
``calibrate`` and ``fit-choices``; their one-line errors; what they write into weights, recorded in the folder's
recipe; and a ``--help`` that loads no torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from synthetic import make_coco_folder, make_flickr8k

from captioner.cli.main import main
from captioner.cli.recipe import RECIPE, record


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main([*argv, "--quiet"])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["caption", "--help"],
        ["ask", "--help"],
        ["eval", "--help"],
        ["app", "--help"],
        ["calibrate", "--help"],
        ["questions", "--help"],
    ],
)
def test_help_and_version_import_no_torch(argv):
    code = (
        "import sys\nfrom captioner.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: captioner" in done.stdout or done.stdout.startswith("captioner ")


@pytest.mark.parametrize(
    "command, formats",
    [
        ("calibrate", "caption formats: flickr8k, coco, karpathy, imagefolder; question formats: daquar, coco"),
        ("atlas", "formats: flickr8k, coco, karpathy, imagefolder"),
        ("questions", "formats: flickr8k, coco"),
        ("fit-choices", "formats: daquar, coco, vqa2"),
    ],
)
def test_a_missing_data_option_is_one_line_that_lists_the_formats(capsys, command, formats):
    code, out, err = run(capsys, [command])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("captioner: error: give ") and "--data FORMAT:FOLDER" in err and formats in err


def test_bad_options_and_unwritable_outputs_are_one_line(capsys, tmp_path):
    for argv in (
        ["calibrate", "--data", "nope:/x"],
        ["calibrate", "--data", "coco:/x", "--task", "nope"],
        ["questions", "--data", f"flickr8k:{tmp_path}", "--out", "/proc/x"],
        ["atlas", "--data", f"flickr8k:{tmp_path}", "--figure", "/proc/x.png"],
        ["fit-choices", "--data", f"coco:{tmp_path}", "--weights", str(tmp_path / "none")],
        ["questions", "--data", f"flickr8k:{tmp_path}", "--out", str(tmp_path), "--show", "-1"],
    ):
        code, out, err = run(capsys, argv)
        assert code == 2 and err.startswith("captioner: error: ") and err.count("\n") == 1, (argv, err)
        assert "Traceback" not in err


def test_questions_writes_the_training_questions(capsys, tmp_path):
    root = tmp_path / "flickr8k"
    (root / "images").mkdir(parents=True)
    names = [f"{i}.jpg" for i in range(6)]
    for name in names:
        (root / "images" / name).write_bytes(b"")  # never read: questions come from captions
    captions = ["A man riding a skateboard down the street .", "Two dogs play in the snow ."]
    (root / "Flickr8k.token.txt").write_text("".join(f"{n}#0\t{captions[i % 2]}\n" for i, n in enumerate(names)))
    (root / "Flickr_8k.trainImages.txt").write_text("\n".join(names[:4]) + "\n")
    (root / "Flickr_8k.devImages.txt").write_text("\n".join(names[4:]) + "\n")
    code, out, err = run(
        capsys, ["questions", "--data", f"flickr8k:{root}", "--out", str(tmp_path / "q"), "--show", "2"]
    )
    assert code == 0, err
    lines = out.splitlines()
    assert json.loads(lines[0])["all"] > 0 and len(lines) == 3
    assert (tmp_path / "q" / "qa_train.jsonl").read_text().count("\n") == json.loads(lines[0])["all"]


def _copy(weights_dir: Path, folder: Path) -> Path:
    shutil.copytree(weights_dir, folder, ignore=shutil.ignore_patterns("README.md"))
    return folder


def test_record_writes_the_change_and_the_step_once(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"task": "vqa", RECIPE: ["captioner calibrate --data a"]}))
    record(tmp_path, {"confidence": {"answer": 0.5}}, "captioner fit-choices --data b")
    record(tmp_path, {"confidence": {"answer": 0.6}}, "captioner calibrate --data c")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["confidence"] == {"answer": 0.6}
    assert config[RECIPE] == ["captioner fit-choices --data b", "captioner calibrate --data c"]
    with pytest.raises(ValueError, match="confidence.answer must be at least 0 and at most 1"):
        record(tmp_path, {"confidence": {"answer": 2.0}}, "captioner calibrate --data d")
    assert json.loads((tmp_path / "config.json").read_text()) == config  # nothing written
    record(tmp_path, {"confidence": {"yes_no": 0.9}}, "captioner calibrate --data c --task yes_no")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["confidence"] == {"answer": 0.6, "yes_no": 0.9}  # one threshold does not drop another
    assert config[RECIPE][-2:] == ["captioner calibrate --data c", "captioner calibrate --data c --task yes_no"]


def test_calibrate_writes_the_caption_threshold_and_its_step(weights_dir, tmp_path, capsys):
    from captioner.pretrained import load_pretrained

    weights = _copy(weights_dir, tmp_path / "w")
    data = make_flickr8k(tmp_path / "flickr8k")
    argv = ["calibrate", "--data", f"flickr8k:{data}", "--task", "caption", "--weights", str(weights), "--write"]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    assert out.startswith("caption: threshold ") and "two-fold held out" in out and "written to" in out
    config = json.loads((weights / "caption" / "config.json").read_text())
    assert config[RECIPE][-1] == " ".join(["captioner", *argv, "--quiet"])
    threshold = float(out.split()[2])
    assert config["confidence"] == {"caption": round(threshold, 4)}
    assert load_pretrained(weights, with_vqa=False)[0].confidence == {"caption": round(threshold, 4)}


def test_fit_choices_writes_the_rule_into_the_vqa_config(weights_dir, has_vqa, tmp_path, capsys):
    if not has_vqa:
        pytest.skip("needs weights with vqa/")
    from captioner.pipeline import VQAPredictor

    weights = _copy(weights_dir, tmp_path / "w")
    coco = make_coco_folder(tmp_path / "coco")
    code, out, err = run(capsys, ["fit-choices", "--data", f"coco:{coco}", "--weights", str(weights)])
    assert code == 0, err
    rule = json.loads((weights / "vqa" / "config.json").read_text())["choices"]
    assert sorted(rule) == sorted(
        ["oov_bias", "unknown_weight", "vqa_weight", "word_weight", "concept_weight", "no_concept_weight"]
    )
    assert (
        out.startswith("fitted on 16 train questions (4-way)")
        and vars(VQAPredictor.from_pretrained(weights).choice_weights) == rule
    )
    assert json.loads((weights / "caption" / "config.json").read_text()) == json.loads(
        (weights_dir / "caption" / "config.json").read_text()
    )  # only the VQA config changes


def _card_commands(card: Path) -> list[str]:
    """The commands of a model card's code blocks, continuation lines joined, comments and spacing dropped."""
    text = card.read_text().replace("\\\n", " ")
    blocks = text.split("```")[1::2]
    lines = [line.split("  #")[0] for block in blocks for line in block.splitlines()]
    return [" ".join(line.split()) for line in lines if line.strip()]


def test_every_model_card_lists_its_entrys_recipe_in_order():
    from captioner.pretrained import list_weights

    for w in list_weights():
        steps = [" ".join(step.split()) for step in w.recipe.split(" && ")]
        listed = [line for line in _card_commands(w.path / "README.md") if line in steps]
        shown = [s for s in steps if s.startswith("captioner ")]
        assert [s for s in listed if s.startswith("captioner ")] == shown, w.name
        finishing = {"captioner lm atlas"} if w.task == "lm" else {"captioner atlas", "captioner calibrate"}
        assert finishing & {" ".join(s.split()[: len(next(iter(finishing)).split())]) for s in shown}, w.name
