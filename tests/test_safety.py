"""Bad input never gives a traceback or a silent success, and no file is lost (issue 18).

The fuzz tests run ``captioner`` over a generated grid of bad option values and bad inputs: each must
exit non-zero with exactly one line on stderr. In-process runs see any exception that would have been
a traceback (it fails the test); a few subprocess runs check the real command as a shell sees it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EXAMPLE_IMAGE, ROOT
from PIL import Image
from synthetic import draw, png_claiming_size

from captioner import features as feature_cache
from captioner.checkpoint import save_checkpoint
from captioner.cli.files import read_results
from captioner.cli.main import main
from captioner.decoder import CaptionDecoder, DecoderConfig
from captioner.decoding import DecodeConfig, decode
from captioner.images import BadImageError, load_image
from captioner.pipeline import Captioner, VQAPredictor
from captioner.train.caption import TrainConfig
from captioner.train.vqa import VQATrainConfig
from captioner.vocab import Vocabulary, tokenize_words
from captioner.vqa import VQAConfig, VQAModel


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``captioner ARGV`` in this process: its exit code (argparse's exits included), stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str) -> None:
    assert code != 0 and err.startswith("captioner: error: ") and err.count("\n") == 1, (code, err)


# ---------------------------------------------------------------- fuzz: bad option values

IMAGE = str(EXAMPLE_IMAGE)
BAD_VALUES = {  # caption option: values it must refuse when the command line is parsed
    "--beam": ["0", "-1", "51", "100000", "2.5", "x", "nan"],
    "--n-best": ["0", "-3", "1000"],
    "--batch-size": ["0", "-1", "100000", "1e3"],
    "--temperature": ["0", "-1", "nan", "inf"],
    "--top-k": ["-1", "x"],
    "--top-p": ["0", "-0.5", "1.5", "nan"],
    "--length-penalty": ["nan", "-inf", "inf", "-1"],
    "--no-repeat-ngram": ["-1", "nan"],
    "--min-length": ["-1", "1000"],
    "--max-length": ["0", "1000"],
    "--seed": ["x", "1.5"],
}


def _training_flags(config_cls) -> list[str]:
    return ["--" + f.name.replace("_", "-") for f in fields(config_cls) if str(f.type) in ("int", "float")]


OPTION_GRID = (
    [["caption", IMAGE, option, value] for option, values in BAD_VALUES.items() for value in values]
    + [["eval", "results.json", option, value] for option in ("--beam", "--batch-size") for value in ("0", "-1", "x")]
    + [["ask", IMAGE, "what is it", "--top-k", value] for value in ("0", "-1", "nan")]
    + [
        [command, flag, value]
        for command, cls in (("train", TrainConfig), ("train-vqa", VQATrainConfig))
        for flag in _training_flags(cls)
        for value in ("nan", "-inf", "-1", "x")
    ]
    + [
        ["train", flag, "0"]
        for flag in ("--batch-size", "--lr", "--hidden-dim", "--num-layers", "--scst-lr", "--epochs")
    ]
    + [
        ["train", "--dropout", "1"],
        ["train", "--scst-samples", "1"],
        ["train-vqa", "--val-fraction", "1"],
        ["train-vqa", "--lr", "1e300"],
        ["train", "--hidden-dim", "100000"],
        ["train", "--max-length", "101"],
        ["train", "--seed", str(2**32)],
        ["train-vqa", "--epochs", "0"],
        ["train-vqa", "--fusion", "sum"],
        ["caption"],
        ["caption", IMAGE, "--format", "xml"],
        ["frobnicate"],
        ["caption", IMAGE, "--no-such-flag"],
    ]
    + [["caption", IMAGE, "--length-penalty", value] for value in ("1e300", "99999999999999999999999", "1_000")]
    + [["caption", IMAGE, "--sample", option, "1e-300"] for option in ("--temperature", "--top-p")]
    + [
        [command, *option]
        for command in ("train", "train-vqa")
        for option in (  # issue 27's probes
            ["--lr", "1e300"],
            ["--weight-decay", "1e300"],
            ["--hidden-dim", "10000000"],
            ["--embed-dim", "1000000000"],
            ["--threads", "1e20"],
            ["--threads", "100000000000000000000"],
            ["--max-length", "1000000000"],
            ["--epochs", "0"],
        )
    ]
)


@pytest.mark.parametrize("argv", OPTION_GRID, ids=" ".join)
def test_bad_option_values_are_one_line_errors_at_parse_time(capsys, argv):
    code, out, err = run(capsys, argv)
    assert code == 2 and out == ""
    assert_one_line_error(code, err)


@pytest.mark.parametrize(
    "argv, says",
    [
        (
            ["train"],
            "no datasets: give --data FORMAT:FOLDER[:WEIGHT] at least once (formats: flickr8k, coco, karpathy, "
            "imagefolder;",
        ),
        (["train-vqa"], "no datasets: give --data FORMAT:FOLDER[:WEIGHT] at least once (formats: daquar, coco, vqa2,"),
        (["train", "--data", "flickr8k"], "dataset 'flickr8k': give its folder, as flickr8k:FOLDER[:WEIGHT]"),
        (["train", "--data", "daquar:x"], "dataset 'daquar:x': unknown format 'daquar'"),
        (["train-vqa", "--data", "coco"], "dataset 'coco': give its folder, as coco:FOLDER[:WEIGHT]"),
    ],
    ids=" ".join,
)
def test_training_without_usable_datasets_is_a_one_line_error(capsys, tmp_path, argv, says):
    code, out, err = run(capsys, [*argv, "--out", str(tmp_path / "run")])
    assert code == 2 and out == "" and err.startswith(f"captioner: error: {says}")
    assert_one_line_error(code, err)
    assert not (tmp_path / "run").exists()  # refused before any work


# ---------------------------------------------------------------- fuzz: bad inputs


def _checkpoint(folder: Path) -> Path:
    """A tiny, valid caption checkpoint folder: the base for the broken ones."""
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "dog"])
    decoder = CaptionDecoder(DecoderConfig(len(vocab), 1280, 8, 8, 8))
    save_checkpoint(
        folder,
        decoder,
        {"task": "caption", "encoder": "efficientnet-lite0", "decoder": asdict(decoder.config)},
        {"vocab.json": {"max_length": 20, "words": vocab.words}},
    )
    return folder


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """Files and folders that each command must refuse in one line."""
    d = tmp_path_factory.mktemp("bad")
    paths = {
        name: d / name
        for name in (
            "empty",
            "folder",
            "file",
            "tokens.txt",
            "list_id.json",
            "null.json",
            "binary.json",
            "answered.csv",
            "binary.csv",
            "garbage.pt",
        )
    }
    paths["empty"].mkdir()
    paths["folder"].mkdir()
    paths["file"].write_text("a file where a folder should be")
    paths["tokens.txt"].write_text("1.jpg#0\ta dog\n")
    paths["list_id.json"].write_text(json.dumps([{"image_id": [1], "caption": "a dog"}]))
    paths["null.json"].write_text(json.dumps([{"image_id": "1.jpg", "caption": None}]))
    paths["binary.json"].write_bytes(b"\xff\xfe\x00\x81" * 10)
    paths["answered.csv"].write_text("image_id,question,predicted_answer\nx,what is it,cat\n")
    paths["repeated.csv"] = d / "repeated.csv"
    paths["repeated.csv"].write_text("image_id,question,image_id\nx,what is it,y\n")
    paths["binary.csv"].write_bytes(b"\xff\xfe\x00\x81" * 10)
    paths["garbage.pt"].write_bytes(b"not a torch file")
    for name, corrupt in {
        "weights_garbage": lambda c: (c / "model.safetensors").write_bytes(b"\x00" * 64),
        "weights_nan": lambda c: save_checkpoint(
            c,
            {**_tensors(c), "embed.weight": torch.full((6, 8), float("nan"))},
            json.loads((c / "config.json").read_text()),
        ),
        "config_not_json": lambda c: (c / "config.json").write_text("{not json"),
        "config_no_decoder": lambda c: (c / "config.json").write_text(json.dumps({"encoder": "efficientnet-lite0"})),
        "config_bad_setting": lambda c: _edit_config(c, lambda cfg: cfg["decoder"].update(cell="gru")),
        "config_wrong_shape": lambda c: _edit_config(c, lambda cfg: cfg["decoder"].update(hidden_dim=16)),
        "vocab_broken": lambda c: (c / "vocab.json").write_text(json.dumps({"words": ["a"], "max_length": 20})),
    }.items():
        corrupt(_checkpoint(d / name))
        paths[name] = d / name
    return paths


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _edit_config(folder: Path, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


BROKEN_WEIGHTS = {  # checkpoint folder made by `bad`: what its one-line load error must say
    "weights_garbage": "model.safetensors: cannot read tensors",
    "weights_nan": "model.safetensors: 1 tensor(s) hold NaN or infinite values (first: embed.weight)",
    "config_not_json": "config.json: cannot read JSON",
    "config_no_decoder": "config.json: missing 'decoder'",
    "config_bad_setting": "config.json: decoder: cell must be one of",
    "config_wrong_shape": "model.safetensors: the weights do not fit the model its config.json describes "
    "(wrong shape: ",
    "vocab_broken": "vocab.json: vocabulary must start with",
}
INPUT_GRID = {  # name: (argv from the bad files and the weights, what the one line must say)
    "empty folder": (lambda b, w: ["caption", str(b["empty"])], "no image files in"),
    "-o is a folder": (lambda b, w: ["caption", IMAGE, "-o", str(b["folder"])], "is a folder"),
    "-o below a file": (lambda b, w: ["caption", IMAGE, "-o", str(b["file"] / "x.txt")], "a file is in the way"),
    **{
        f"--weights {name}": (lambda b, w, name=name: ["caption", IMAGE, "--weights", str(b[name])], says)
        for name, says in BROKEN_WEIGHTS.items()
    },
    "garbage encoder weights": (
        lambda b, w: ["caption", IMAGE, "--weights", str(w), "--encoder-weights", str(b["garbage.pt"])],
        "garbage.pt: cannot read weights",
    ),
    "results is a folder": (
        lambda b, w: ["eval", str(b["folder"]), "--flickr8k-tokens", str(b["tokens.txt"])],
        "is a folder, not a results file",
    ),
    "list image_id": (
        lambda b, w: ["eval", str(b["list_id.json"]), "--flickr8k-tokens", str(b["tokens.txt"])],
        "image_id must be a number or a string, not [1]",
    ),
    "null caption": (
        lambda b, w: ["eval", str(b["null.json"]), "--flickr8k-tokens", str(b["tokens.txt"])],
        "must be a string, not null",
    ),
    "binary results": (
        lambda b, w: ["eval", str(b["binary.json"]), "--flickr8k-tokens", str(b["tokens.txt"])],
        "not a text file",
    ),
    "missing results": (
        lambda b, w: ["eval", str(b["folder"] / "nope.json"), "--flickr8k-tokens", str(b["tokens.txt"])],
        "nope.json",
    ),
    "--json below a file": (
        lambda b, w: [
            "eval",
            str(b["null.json"]),
            "--flickr8k-tokens",
            str(b["tokens.txt"]),
            "--json",
            str(b["file"] / "x" / "scores.json"),
        ],
        "a file is in the way",
    ),
    "eval --weights without --root": (lambda b, w: ["eval", "--weights", str(w)], "--weights needs --root"),
    "CSV with the prediction column": (
        lambda b, w: ["ask", "--batch", str(b["answered.csv"]), "--images", str(b["folder"]), "--weights", str(w)],
        "",
    ),
    "binary CSV": (
        lambda b, w: ["ask", "--batch", str(b["binary.csv"]), "--images", str(b["folder"]), "--weights", str(w)],
        "",
    ),
    "CSV naming a column twice": (
        lambda b, w: ["ask", "--batch", str(b["repeated.csv"]), "--images", str(b["folder"]), "--weights", str(w)],
        "'image_id' more than once",
    ),
    "empty question": (lambda b, w: ["ask", IMAGE, "?!", "--weights", str(w)], ""),
}


@pytest.mark.parametrize("name", INPUT_GRID)
def test_bad_inputs_are_one_line_errors(capsys, bad, weights_dir, name):
    make_argv, says = INPUT_GRID[name]
    code, out, err = run(capsys, make_argv(bad, weights_dir))
    assert_one_line_error(code, err)
    assert says in err and out == ""


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        lambda b: ["caption", IMAGE, "--beam", "100000"],
        lambda b: ["caption", str(b["empty"])],
        lambda b: ["caption", IMAGE, "--weights", str(b["weights_nan"])],
        lambda b: ["eval", str(b["list_id.json"]), "--flickr8k-tokens", str(b["tokens.txt"])],
    ],
)
def test_the_real_command_prints_one_line_and_no_traceback(bad, argv):
    done = subprocess.run(
        [sys.executable, "-m", "captioner.cli.main", *argv(bad)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("captioner: error: "), done.stderr


# ---------------------------------------------------------------- results files


def test_an_interrupted_caption_run_leaves_the_old_results(weights_dir, tmp_path, capsys, monkeypatch):
    results = tmp_path / "results.json"
    results.write_text("old results\n")
    calls = []

    def interrupted(self, features, config=None, keys=None):  # Ctrl-C while the second batch is decoded
        calls.append(keys)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, features, config, keys)

    real = Captioner.caption_features
    monkeypatch.setattr(Captioner, "caption_features", interrupted)
    code, _, err = run(
        capsys,
        [
            "caption",
            IMAGE,
            str(ROOT / "examples" / "pizza.jpg"),
            "--batch-size",
            "1",
            "--weights",
            str(weights_dir),
            "--format",
            "coco",
            "-o",
            str(results),
        ],
    )
    assert code == 130 and "interrupted" in err and len(calls) == 2
    assert results.read_text() == "old results\n" and os.listdir(tmp_path) == ["results.json"]  # no temporary file
    monkeypatch.setattr(Captioner, "caption_features", real)
    code, _, _ = run(capsys, ["caption", IMAGE, "--weights", str(weights_dir), "--format", "coco", "-o", str(results)])
    assert code == 0 and json.loads(results.read_text())[0]["image_id"] == "tennis.jpg"


def test_output_folders_are_created(weights_dir, tmp_path, capsys):
    out = tmp_path / "new" / "folder" / "captions.jsonl"
    code, _, _ = run(capsys, ["caption", IMAGE, "--weights", str(weights_dir), "--format", "jsonl", "-o", str(out)])
    assert code == 0 and json.loads(out.read_text())["file"] == IMAGE


def test_an_empty_folder_among_images_is_reported_and_fails(weights_dir, bad, capsys):
    code, out, err = run(capsys, ["caption", str(bad["empty"]), IMAGE, "--weights", str(weights_dir)])
    assert code == 1 and out.startswith(IMAGE)
    assert f"captioner: skipped {bad['empty']}: no image files in this folder\n" in err


def test_results_records_must_be_well_typed(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"image_id": 7, "caption": "a dog"}\n{"image_id": "x.jpg", "caption": "a cat"}\n')
    assert read_results(good) == {7: "a dog", "x.jpg": "a cat"}
    for image_id, caption, message in [
        (True, "a", "image_id must be"),
        (1.5, "a", "image_id must be"),
        ({"a": 1}, "a", "image_id must be"),
        (1, None, "not null"),
        (1, ["a"], 'not ["a"]'),
        (1, 5, "not 5"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps([{"image_id": image_id, "caption": caption}]))
        with pytest.raises(ValueError, match=re.escape(message)):
            read_results(bad)


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", BROKEN_WEIGHTS)
def test_load_errors_name_the_file_in_one_line(bad, name):
    with pytest.raises(ValueError) as error:
        Captioner.from_pretrained(bad[name], load_vqa=False)
    message = str(error.value)
    assert message.startswith(f"{bad[name] / BROKEN_WEIGHTS[name]}") and "\n" not in message


def test_vqa_load_errors_name_the_file_in_one_line(tmp_path):
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "what"])
    model = VQAModel(VQAConfig(len(vocab), 2, 1280, embed_dim=4, hidden_dim=4, fused_dim=4, mlp_dim=4))
    save_checkpoint(
        tmp_path,
        model,
        {"task": "vqa", "encoder": "efficientnet-lite0", "model": asdict(model.config)},
        {"vocab.json": {"max_length": 30, "words": vocab.words}, "answers.json": ["yes", "no", "maybe"]},
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{tmp_path / 'config.json'}: model: vocab_size 5 and num_answers 2, "
            "but vocab.json has 5 words and answers.json 3 answers"
        ),
    ):
        VQAPredictor.from_pretrained(tmp_path)
    (tmp_path / "answers.json").write_text("[yes")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'answers.json'}: cannot read JSON")):
        VQAPredictor.from_pretrained(tmp_path)
    save_checkpoint(
        tmp_path,
        {k: v * float("inf") for k, v in model.state_dict().items()},
        json.loads((tmp_path / "config.json").read_text()),
        {"answers.json": ["yes", "no"]},
    )
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'model.safetensors'}: ")):
        VQAPredictor.from_pretrained(tmp_path)


# ---------------------------------------------------------------- seeded sampling


def _random_decoder() -> CaptionDecoder:
    torch.manual_seed(3)
    return CaptionDecoder(DecoderConfig(40, 16, 8, 16, 8, dropout=0))


def test_seeded_samples_are_independent_and_do_not_depend_on_the_batch():
    model, feats = _random_decoder(), torch.randn(4, 16)
    cfg = DecodeConfig(method="sample", seed=0, n_best=4, temperature=2.0, max_length=8)
    keys = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    together = decode(model, feats, cfg, keys)
    for hyps in together:
        assert len({tuple(h.tokens) for h in hyps}) > 1  # not the same sample n_best times
    fewer = decode(model, feats, dataclasses.replace(cfg, n_best=2), keys)  # samples keep the order they were drawn
    assert [[h.tokens for h in hyps] for hyps in fewer] == [[h.tokens for h in hyps[:2]] for hyps in together]
    assert any([h.score for h in hyps] != sorted((h.score for h in hyps), reverse=True) for hyps in together)
    for i, key in enumerate(keys):  # alone, or with other images, or at another place in the batch
        alone = decode(model, feats[i : i + 1], cfg, [key])[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
    reordered = decode(model, feats.flip(0), cfg, keys[::-1])[::-1]
    assert [[h.tokens for h in hyps] for hyps in reordered] == [[h.tokens for h in hyps] for hyps in together]
    renamed = decode(model, feats, cfg, ["e.jpg", "f.jpg", "g.jpg", "h.jpg"])
    assert [[h.tokens for h in hyps] for hyps in renamed] != [[h.tokens for h in hyps] for hyps in together]


def test_an_image_gets_the_same_sampled_captions_alone_or_in_a_folder(weights_dir, capsys):
    flags = ["--weights", str(weights_dir), "--sample", "--seed", "0", "--n-best", "3"]
    code, alone, _ = run(capsys, ["caption", IMAGE, *flags])
    header, *alone = alone.splitlines()
    assert code == 0 and len(alone) == 3 and header == "file\tsample\tscore\tlog_prob\tcaption"
    code, folder, _ = run(capsys, ["caption", str(EXAMPLE_IMAGE.parent), *flags, "--batch-size", "4"])
    assert code == 0 and [line for line in folder.splitlines() if line.startswith(IMAGE)] == alone


# ---------------------------------------------------------------- tokenization

OLD_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*|'[a-z]+")  # the ASCII-only tokenizer the shipped weights used


def test_non_ascii_letters_are_kept_and_ascii_tokens_are_unchanged():
    assert tokenize_words("Is the café's crème brûlée hot?") == ["is", "the", "café", "'s", "crème", "brûlée", "hot"]
    assert tokenize_words("Ein Mädchen, ÉCOLE, naïve") == ["ein", "mädchen", "école", "naïve"]
    assert tokenize_words("cafe\u0301") == ["café"]  # a combining accent stays in its word
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 -_'.,!?\"()&/\t")
    for _ in range(2000):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 40))))
        assert tokenize_words(text) == OLD_WORD.findall(text.lower()), text


# ---------------------------------------------------------------- feature cache


class _Encoder:
    """Just enough of an ImageEncoder for ``cached_features``."""

    class spec:  # noqa: N801 (mirrors ImageEncoder.spec)
        name, image_size = "fake", 32

    class preprocessing:  # noqa: N801 (mirrors ImageEncoder.preprocessing)
        image_size, mean, std = 32, (0.5,), (0.5,)

    trainable_blocks = 0

    def trunk_digest(self) -> str:
        return "fake"


def test_interrupted_feature_extraction_leaves_no_partial_file(tmp_path, monkeypatch):
    images = []
    for i in range(4):
        images.append(tmp_path / f"{i}.png")
        draw("red", "circle", 16).save(images[-1])
    cache = tmp_path / "cache"
    batches = []

    def encode(encoder, chunk, flip=False, trunk=False):
        batches.append(chunk)
        if len(batches) == 2:
            raise KeyboardInterrupt
        return torch.ones(len(chunk), 1, 3)

    monkeypatch.setattr(feature_cache, "encode_images", encode)
    with pytest.raises(KeyboardInterrupt):
        feature_cache.cached_features(_Encoder(), images, cache, batch_size=2)
    assert len(batches) == 2 and list(cache.iterdir()) == []

    # A writer killed outright (SIGKILL) cleans nothing up: the next run deletes its file, not a live one's.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan, live = cache / f"fake-9-abc.{dead.pid}.partial", cache / f"fake-9-abc.{os.getppid()}.partial"
    orphan.write_bytes(b"half")
    live.write_bytes(b"half")
    features = feature_cache.cached_features(_Encoder(), images, cache, batch_size=2)
    assert features.shape == (4, 3) and not orphan.exists() and live.exists()


# ---------------------------------------------------------------- image size limits


@pytest.mark.parametrize(
    "width, height, message",
    [
        (10000, 9000, "image too large (10000x9000 pixels, over the 80-megapixel limit)"),  # past PIL's warning (89.5
        # MP), under its refusal
        (30000, 30000, f"image too large (over {2 * Image.MAX_IMAGE_PIXELS} pixels)"),  # past PIL's refusal
    ],
)
def test_huge_images_get_the_documented_one_line_message(tmp_path, width, height, message):
    path = tmp_path / "huge.png"
    png_claiming_size(path, width, height)
    with pytest.raises(BadImageError) as error:
        load_image(path)
    assert str(error.value) == f"{path}: {message}"


# ---------------------------------------------------------------- odd file names (issue 26)


@pytest.fixture
def odd_names(tmp_path) -> Path:
    """A folder with a plain name, a name that is not UTF-8 (``caf\\xe9.jpg``) and one holding a newline and a TAB."""
    folder = tmp_path / "odd"
    folder.mkdir()
    for name in (b"plain.jpg", b"caf\xe9.jpg", b"new\nline\tname.jpg"):
        (folder / os.fsdecode(name)).write_bytes(EXAMPLE_IMAGE.read_bytes())  # caf\udce9.jpg: PEP 383
    return folder


def test_a_file_name_that_is_not_utf8_is_written_as_its_bytes(weights_dir, odd_names, tmp_path, capsys):
    out = tmp_path / "captions.txt"
    for fmt in ("text", "csv"):
        code, _, err = run(
            capsys,
            ["caption", str(odd_names), "--weights", str(weights_dir), "--format", fmt, "-o", str(out), "--quiet"],
        )
        assert code == 0 and err == "", err
        assert os.fsencode(odd_names) + b"/caf\xe9.jpg" in out.read_bytes() and b"plain.jpg" in out.read_bytes()


def test_odd_file_names_to_a_strict_ascii_stdout(weights_dir, odd_names):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "captioner.cli.main",
            "caption",
            str(odd_names),
            "--weights",
            str(weights_dir),
            "--quiet",
        ],
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "ascii:strict", "LC_ALL": "C"},
    )
    assert done.returncode == 0 and done.stderr == b"", done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split(b"\t")[0].rpartition(b"/")[2] for line in lines] == [
        b"caf\xe9.jpg",
        b"new\\nline\\tname.jpg",
        b"plain.jpg",
    ]


def test_a_newline_or_tab_in_a_file_name_keeps_one_record_per_line(weights_dir, odd_names, capsysbinary):
    for extra in ([], ["--beam", "2", "--n-best", "2"]):
        code, out, _ = run(capsysbinary, ["caption", str(odd_names), "--weights", str(weights_dir), *extra])
        out = out.decode(errors="surrogateescape")
        lines = [line for line in out.splitlines() if not line.startswith("file\t")]
        assert code == 0 and len(lines) == 3 * (2 if extra else 1)
        assert all(line.count("\t") == (1 if not extra else 4) for line in lines)
        assert sum(line.startswith(f"{odd_names}/new\\nline\\tname.jpg\t") for line in lines) == len(lines) // 3
    (odd_names / "broken\nname.jpg").write_bytes(b"not an image")  # its report on stderr is one line too
    code, _, err = run(
        capsysbinary, ["caption", str(odd_names / "broken\nname.jpg"), "--weights", str(weights_dir), "--quiet"]
    )
    assert code == 1 and err.decode().startswith(f"captioner: skipped {odd_names}/broken\\nname.jpg: ")
    assert err.decode().count("\n") == 2  # that line, and the count of files that could not be read


# ---------------------------------------------------------------- full disks


def test_a_full_disk_while_training_is_one_line_and_keeps_the_earlier_checkpoints(tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError
    from synthetic import make_flickr8k

    from captioner import checkpoint

    data, out = make_flickr8k(tmp_path / "data"), tmp_path / "run"
    saved = []

    def save_file(tensors, filename):  # the 4th file, in epoch 2, finds the disk full, as safetensors reports it
        saved.append(filename)
        if len(saved) == 4:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real(tensors, filename)

    real = checkpoint.save_file
    monkeypatch.setattr(checkpoint, "save_file", save_file)
    code, _, err = run(
        capsys,
        [
            "train",
            "--data",
            f"flickr8k:{data}",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--embed-dim",
            "8",
            "--hidden-dim",
            "8",
            "--image-dim",
            "8",
            "--quiet",
        ],
    )
    assert code == 1 and len(saved) == 4
    assert re.fullmatch(
        rf"captioner: error: {re.escape(str(out))}/(best|last)\.new/\w+\.safetensors: "
        r"No space left on device\n",
        err.splitlines(keepends=True)[-1],
    ), err
    assert sorted(os.listdir(out)) == ["best", "last"]  # no half-written folder left behind
    assert json.loads((out / "last" / "state.json").read_text()) and Captioner.from_pretrained(
        out / "best", load_vqa=False
    )
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_disk_too_full_for_the_feature_cache_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    images = []
    for i in range(4):
        images.append(tmp_path / f"{i}.png")
        draw("red", "circle", 16).save(images[-1])
    cache = tmp_path / "cache"
    monkeypatch.setattr(
        feature_cache, "encode_images", lambda encoder, chunk, flip=False, trunk=False: torch.ones(len(chunk), 1, 3)
    )

    def full(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)  # space is reserved before the map is written
    with pytest.raises(OSError) as error:
        feature_cache.cached_features(_Encoder(), images, cache, batch_size=2)
    e = error.value
    assert e.filename.startswith(str(cache / "fake-4-")) and e.filename.endswith(".npy")
    assert "No space left on device" in e.strerror and "\n" not in f"{e.filename}: {e.strerror}"
    assert list(cache.iterdir()) == []


# ---------------------------------------------------------------- ask --batch CSVs


def test_question_csv_with_a_repeated_column_or_a_ragged_row_is_refused(tmp_path):
    from captioner.cli.files import AnswerWriter, read_question_rows

    repeated = tmp_path / "repeated.csv"
    repeated.write_text("image_id,question,image_id\na,what is it,b\n")
    with pytest.raises(
        ValueError, match=re.escape(f"{repeated}: the header names column(s) 'image_id' more than once")
    ):
        read_question_rows(repeated)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("image_id,question,answer\na,what is it,cat\nb,is it red\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(ragged))}: row 3: 2 fields, but the header has 3$"):
        read_question_rows(ragged)
    table = tmp_path / "table.csv"
    table.write_bytes(b"\xef\xbb\xbfimage_id,question,answer\r\na,what is it,cat\r\n\r\nc,how many,2\r\n")  # BOM, CRLF
    table = read_question_rows(table)
    assert table.columns == ["image_id", "question", "answer"]
    assert table.questions() == [("a", "what is it"), ("c", "how many")]
    out = io.StringIO()
    writer = AnswerWriter(out, table.columns)
    for row, answer, sure in zip(table.rows, [("cat", 0.5), None], [True, None]):
        writer.write(row, answer, sure)
    assert out.getvalue().splitlines() == [
        "image_id,question,answer,predicted_answer,probability,sure",
        "a,what is it,cat,cat,0.5000,true",
        "c,how many,2,,,",
    ]


def test_ask_batch_refuses_a_ragged_row_and_two_images_of_one_name(weights_dir, has_vqa, tmp_path, capsys):
    if not has_vqa:
        pytest.skip("no VQA weights")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(EXAMPLE_IMAGE.read_bytes())
    questions = tmp_path / "qa.csv"
    questions.write_text("image_id,question\n1,what sport is this,kept\n")
    ask = [
        "ask",
        "--batch",
        str(questions),
        "--images",
        str(tmp_path / "images"),
        "--weights",
        str(weights_dir),
        "--quiet",
    ]
    code, out, err = run(capsys, ask)
    assert (code, out) == (1, "") and err == f"captioner: error: {questions}: row 2: 3 fields, but the header has 2\n"
    questions.write_text("image_id,question\n1,what sport is this\n")
    (tmp_path / "images" / "1.png").write_bytes(b"")
    code, out, err = run(capsys, ask)
    assert (code, out) == (1, "") and err == (
        f"captioner: error: {tmp_path / 'images'}: 1.jpg and 1.png are both image '1'; rename or remove one\n"
    )


def test_questions_go_through_the_model_in_bounded_batches_and_come_out_in_row_order(has_vqa, tmp_path, monkeypatch):
    if not has_vqa:
        pytest.skip("no VQA weights")
    from captioner.cli import batch

    model = VQAPredictor.from_pretrained()
    for name in ("a", "b"):
        (tmp_path / f"{name}.jpg").write_bytes(EXAMPLE_IMAGE.read_bytes())
    rows = [("a", "what sport is this")] * 7 + [("missing", "what is it"), ("a", ""), ("b", "is it sunny")] * 2
    batches = []
    forward = VQAPredictor.forward
    monkeypatch.setattr(batch, "QUESTION_BATCH", 3)
    monkeypatch.setattr(VQAPredictor, "forward", lambda self, f, q: batches.append(len(q)) or forward(self, f, q))
    results = list(batch.answer_rows(model, rows, tmp_path, progress=False))
    assert [i for i, _, _ in results] == list(range(len(rows)))
    assert batches == [3, 3, 1, 2]  # image a's 7 answerable questions 3 at a time, then image b's 2
    assert [error for _, _, error in results if error] == [
        "no image named 'missing' in " + str(tmp_path),
        "the question is empty (it has no words)",
    ] * 2
    answers = [answer for _, answer, _ in results[:7]]  # the same question, in batches of 3, 3 and 1
    assert {text for text, _ in answers} == {answers[0][0]} and answers[0][1] > 0
    # PyTorch promises no bit-identical floats across batch sizes on the CPU (kernels differ by size and by CPU)
    assert [p for _, p in answers] == pytest.approx([answers[0][1]] * 7, abs=1e-5)


# ---------------------------------------------------------------- temporary files of killed writes


def test_a_later_write_removes_the_temporary_files_of_killed_writers_only(weights_dir, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "captions.txt"
    orphan, live = tmp_path / f".captions.txt.{dead.pid}.k3j_x9a2.tmp", tmp_path / f".captions.txt.{os.getppid()}.a.tmp"
    other = tmp_path / f".other.txt.{dead.pid}.k3j_x9a2.tmp"  # another file's: its own next write removes it
    for path in (orphan, live, other):
        path.write_text("half")
    code, _, _ = run(capsys, ["caption", IMAGE, "--weights", str(weights_dir), "-o", str(out), "--quiet"])
    assert code == 0 and out.read_text().startswith(IMAGE)
    assert not orphan.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live.name, other.name])


def test_an_empty_image_is_refused():
    with pytest.raises(BadImageError, match="^image: empty image \\(0x0 pixels\\)$"):
        load_image(Image.new("RGB", (0, 0)))


def test_a_folder_scan_reports_what_it_cannot_read_and_an_empty_path_is_refused(tmp_path):
    from captioner.images import expand_paths

    Image.new("RGB", (8, 8)).save(tmp_path / "good.jpg")
    (tmp_path / "phone.heic").write_bytes(b"ftypheic")
    (tmp_path / "notes.txt").write_text("not an image, and not one by its name either")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    skipped = []
    assert expand_paths([str(tmp_path)], skipped) == [tmp_path / "good.jpg"]
    assert skipped == [
        (tmp_path / "gone.jpg", "a broken link"),
        (tmp_path / "phone.heic", ".heic images are not supported"),
    ]
    with pytest.raises(ValueError, match="an empty path names no image"):
        expand_paths([""])
