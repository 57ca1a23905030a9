"""`captioner caption` on good and bad input, every command's help, and multi-process training under torchrun."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic import draw, make_flickr8k, png_claiming_size

from captioner.cli.main import build_parser, main
from captioner.decoding import DecodeConfig
from captioner.images import BadImageError, load_image
from captioner.pipeline import Captioner
from captioner.pretrained import load_pretrained


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    base = draw("red", "circle", 64)
    files = {}

    def save(name, img, **kw):
        files[name] = d / name
        img.save(files[name], **kw)

    save("rgb.jpg", base)
    save("gray.png", base.convert("L"))
    save("cmyk.jpg", base.convert("CMYK"))
    save("rgba.png", base.convert("RGBA"))
    save("sixteen.png", Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    save("rotated.jpg", Image.new("RGB", (64, 32), (0, 0, 255)), exif=exif.tobytes())
    files["corrupt.jpg"] = d / "corrupt.jpg"
    files["corrupt.jpg"].write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    jpeg = io.BytesIO()
    draw("blue", "square", 256).save(jpeg, format="JPEG")
    files["truncated.jpg"] = d / "truncated.jpg"
    files["truncated.jpg"].write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    files["notes.png"] = d / "notes.png"
    files["notes.png"].write_text("this is not an image\n")
    files["huge.png"] = d / "huge.png"
    png_claiming_size(files["huge.png"], 30000, 30000)
    return files


GOOD = ["rgb.jpg", "gray.png", "cmyk.jpg", "rgba.png", "sixteen.png", "rotated.jpg"]
BAD = ["corrupt.jpg", "truncated.jpg", "notes.png", "huge.png"]


def test_load_image_normalises_modes_and_orientation(images):
    for name in GOOD:
        img = load_image(images[name])
        assert img.mode == "RGB", name
    assert load_image(images["rotated.jpg"]).size == (32, 64)  # EXIF rotation applied
    sixteen = np.asarray(load_image(images["sixteen.png"]))
    assert sixteen.max() == 255 and sixteen.min() < 255  # scaled to 8 bits, not clipped to white
    for name in BAD:
        with pytest.raises(BadImageError):
            load_image(images[name])


def test_caption_cli_reports_bad_files_and_captions_the_rest(images, weights_dir, capsys):
    missing = images["rgb.jpg"].parent / "missing.jpg"
    code = main(["caption", *(str(images[n]) for n in GOOD + BAD), str(missing), "--weights", str(weights_dir)])
    out, err = capsys.readouterr()
    assert code == 1
    lines = out.strip().splitlines()
    assert [Path(line.split("\t")[0]).name for line in lines] == GOOD
    assert all(line.split("\t")[1].strip() for line in lines)
    for name in BAD + ["missing.jpg"]:
        reports = [line for line in err.splitlines() if name in line and "skipped" in line]
        assert len(reports) == 1, (name, err)
    assert "5 of 11 file(s) could not be read" in err


def test_caption_cli_formats(images, weights_dir, tmp_path, capsys):
    good = [str(images[n]) for n in GOOD[:2]]
    out_file = tmp_path / "results.json"
    assert main(["caption", *good, "--weights", str(weights_dir), "--format", "coco", "-o", str(out_file)]) == 0
    results = json.loads(out_file.read_text())
    assert [r["image_id"] for r in results] == ["rgb.jpg", "gray.png"] and all(r["caption"] for r in results)
    assert (
        main(["caption", *good, "--weights", str(weights_dir), "--format", "jsonl", "--beam", "3", "--n-best", "3"])
        == 0
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2
    for r in records:
        lps = [c["log_prob"] for c in r["n_best"]]
        assert len(lps) == 3 and r["caption"] == r["n_best"][0]["caption"]
    assert (
        main(
            [
                "caption",
                good[0],
                "--weights",
                str(weights_dir),
                "--format",
                "csv",
                "--sample",
                "--seed",
                "3",
                "--n-best",
                "2",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["rank"] for r in rows] == ["1", "2"] and all(float(r["score"]) < 0 for r in rows)
    assert main(["caption", good[0], "--weights", str(weights_dir), "--format", "csv", "--sample", "--seed", "3"]) == 0
    assert list(csv.DictReader(io.StringIO(capsys.readouterr().out)))[0]["caption"] == rows[0]["caption"]  # drawn first


def test_weights_carry_their_decoding_defaults_and_flags_override_them(weights_dir, tmp_path):
    folder = tmp_path / "weights" / "caption"
    shutil.copytree(weights_dir / "caption", folder)
    config = json.loads((folder / "config.json").read_text())
    config["decoding"] = {"length_penalty": 0.7, "beam_size": 2}
    (folder / "config.json").write_text(json.dumps(config))
    model = Captioner.from_pretrained(folder.parent, load_vqa=False)
    assert (model.decoding.length_penalty, model.decoding.beam_size) == (0.7, 2)
    cfg = model.decoding.override(length_penalty=0.0, n_best=None)
    assert (cfg.length_penalty, cfg.beam_size) == (0.0, 2)


def test_caption_cli_folder_and_glob(images, weights_dir, capsys):
    folder = images["rgb.jpg"].parent
    main(["caption", str(folder / "r*.jpg"), "--weights", str(weights_dir)])
    names = [Path(line.split("\t")[0]).name for line in capsys.readouterr().out.splitlines()]
    assert names == ["rgb.jpg", "rotated.jpg"]


def test_caption_cli_rejects_bad_options(images, weights_dir, capsys):
    assert main(["caption", str(images["rgb.jpg"]), "--weights", str(weights_dir), "--greedy", "--n-best", "2"]) == 2
    assert "greedy" in capsys.readouterr().err
    assert main(["caption", str(images["rgb.jpg"]), "--weights", str(images["rgb.jpg"].parent)]) == 2
    assert "no caption weights" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    data = make_flickr8k(tmp_path / "data")
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "captioner.cli.main",
        "train",
        "--data",
        f"flickr8k:{data}",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--min-count",
        "1",
        "--embed-dim",
        "16",
        "--hidden-dim",
        "16",
        "--image-dim",
        "16",
        "--threads",
        "1",
        "--scst-epochs",
        "1",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "best" / "model.safetensors").exists() and (out / "last" / "state.json").exists()
    assert done.stdout.count("epoch 3:") == 1  # only rank 0 validates and reports; epoch 3 is self-critical


def _stated_defaults(command: str) -> list[tuple[argparse.Action, str]]:
    """Each option of ``command`` with what its help says its default is (the words after 'default: ')."""
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = subparsers.choices[command]
    out = []
    for action in parser._actions:
        if action.dest == "help" or not action.option_strings:
            continue
        said = re.search(r"default: ([^;)]*)", " ".join(action.help.split()))
        assert said, f"{command} {action.option_strings[0]}: the help does not state the default"
        out.append((action, said.group(1).strip()))
    return out


def _shown(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else "none" if value is None else str(value)


@pytest.mark.parametrize(
    "command", ["caption", "ask", "eval", "app", "train", "train-vqa", "questions", "atlas", "calibrate", "fit-choices"]
)
def test_every_option_states_its_true_default(command):
    """The help's 'default: X' is what the option really defaults to; where the weights decide (the option
    defaults to unset), X is the shipped weights' own setting."""
    shipped = load_pretrained(with_vqa=False)[0].decoding
    for action, said in _stated_defaults(command):
        name = f"{command} {action.option_strings[0]}"
        if action.default is None or action.default is argparse.SUPPRESS or action.default is False:
            weights_own = re.fullmatch(r"the weights' own, (\S+) for the shipped weights", said)
            if weights_own:
                assert weights_own.group(1) == str(getattr(shipped, action.dest)), name
            elif action.dest in DecodeConfig.__dataclass_fields__:  # unset: DecodeConfig's default applies
                assert said == _shown(getattr(shipped, action.dest)), f"{name}: says {said!r}"
            else:
                assert said.split(",")[0] in (
                    "none",
                    "off",
                    "false",
                    "stdout",
                    "all",
                    "all images",
                    "auto",
                ) or said.startswith(("the ", "ROOT/")), f"{name}: says {said!r}"
        else:
            assert said.split(",")[0] == _shown(action.default), f"{name}: says {said!r}, is {action.default!r}"
