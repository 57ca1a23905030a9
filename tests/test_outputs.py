"""Nothing a user gave is lost (issue 38): an output path that names an input is refused before any work, as are
an empty path (an unset variable) and an output folder that cannot be written; a folder scan reports the images it
cannot read instead of passing over them in silence; a panorama's caption is marked not sure, and says why."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import EXAMPLE_IMAGE
from PIL import Image

from captioner.cli.main import main


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    shutil.copy(EXAMPLE_IMAGE, path)
    return path


@pytest.mark.parametrize(
    "argv",
    [
        lambda p: ["caption", str(p), "-o", str(p)],
        lambda p: ["caption", str(p.parent), "-o", str(p.parent / "." / p.name)],  # the same file by another name
        lambda p: ["ask", str(p), "what is it", "-o", str(p)],
    ],
)
def test_an_output_that_names_an_input_is_refused_before_any_work(capsys, photo, argv):
    before = photo.read_bytes()
    code, out, err = _run(capsys, argv(photo))
    assert code == 2 and out == "" and "is an input of this command" in err and err.count("\n") == 1
    assert photo.read_bytes() == before


def test_eval_refuses_to_write_its_scores_over_its_results(capsys, tmp_path):
    results = tmp_path / "res.json"
    results.write_text("[]")
    code, _, err = _run(capsys, ["eval", str(results), "--coco-annotations", str(results), "--json", str(results)])
    assert code == 2 and "is an input of this command" in err and results.read_text() == "[]"


def test_an_empty_path_is_refused(capsys):
    code, out, err = _run(capsys, ["caption", ""])
    assert (
        code == 2 and out == "" and err == "captioner: error: an empty path names no image (an unset shell variable?)\n"
    )


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(capsys, photo):
    code, out, err = _run(capsys, ["caption", str(photo), "-o", "/proc/captions.txt"])
    assert code == 2 and out == "" and err.startswith("captioner: error: /proc/captions.txt: cannot write in /proc")


def test_a_folder_scan_says_what_it_skipped(capsys, photo, weights_dir):
    (photo.parent / "phone.heic").write_bytes(b"ftypheic")
    code, out, err = _run(capsys, ["caption", str(photo.parent), "--weights", str(weights_dir), "-q"])
    assert code == 1 and out.startswith(str(photo))
    assert f"captioner: skipped {photo.parent / 'phone.heic'}: .heic images are not supported" in err


@pytest.mark.parametrize("fmt", ["text", "jsonl", "coco"])
def test_a_file_name_that_is_not_utf8_is_written_as_it_is_on_disk(capsys, tmp_path, weights_dir, fmt):
    import os

    name = b"caf\xe9.jpg"  # Latin-1, not UTF-8
    shutil.copy(EXAMPLE_IMAGE, os.path.join(os.fsencode(tmp_path), name))
    out = tmp_path / "out.txt"
    code, _, _ = _run(
        capsys, ["caption", str(tmp_path), "--weights", str(weights_dir), "--format", fmt, "-o", str(out), "-q"]
    )
    assert code == 0 and name in out.read_bytes()


def test_ask_batch_reads_a_csv_from_a_pipe(tmp_path):
    """A pipe reads only once: the CSV is read once, before the model loads (it said 'missing column(s)')."""
    import subprocess
    import sys

    (tmp_path / "images").mkdir()
    shutil.copy(EXAMPLE_IMAGE, tmp_path / "images" / "tennis.jpg")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "captioner.cli",
            "ask",
            "--batch",
            "/dev/stdin",
            "--images",
            str(tmp_path / "images"),
            "-q",
        ],
        input="image_id,question\ntennis,what sport is this\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "image_id,question,predicted_answer,probability,sure"
    assert done.stdout.splitlines()[1].startswith("tennis,what sport is this,")


@pytest.mark.parametrize("host", ["999.1.1.1", "8.8.8.8"])
def test_an_address_the_app_cannot_listen_on_is_said_in_words(capsys, host):
    code, _, err = _run(capsys, ["app", "--host", host])
    assert code == 2 and err.startswith(f"captioner: error: --host {host}: not an address this machine can listen on")


def test_multiple_choice_with_vqa_weights_alone_says_what_it_needs(capsys):
    from captioner.pretrained import get_weights

    vqa = get_weights("vqa-daquar-coco-v4").path
    code, _, err = _run(
        capsys, ["ask", str(EXAMPLE_IMAGE), "what sport is this?", "--choices", "tennis|golf", "--weights", str(vqa)]
    )
    assert code == 2 and "multiple choice also needs caption weights" in err


def test_a_panorama_is_captioned_not_sure_with_a_warning(capsys, tmp_path, weights_dir):
    wide = tmp_path / "panorama.png"
    Image.open(EXAMPLE_IMAGE).convert("RGB").resize((2000, 400)).save(wide)  # 5 to 1
    code, out, err = _run(capsys, ["caption", str(wide), str(EXAMPLE_IMAGE), "--weights", str(weights_dir), "-q"])
    assert code == 0 and out.splitlines()[0].endswith(" (not sure)")
    warning = f"captioner: warning: {wide}: 5.0 times wider than tall (over 3 to 1): the model sees it squashed"
    assert err.startswith(warning) and err.count("\n") == 1  # the panorama alone, in one line
    code, out, _ = _run(capsys, ["caption", str(wide), "--weights", str(weights_dir), "--format", "jsonl", "-q"])
    record = json.loads(out)
    assert record["sure"] is False and record["warning"].startswith("5.0 times wider than tall")
