"""Files that ``captioner eval`` and the image reader are given are user input (issue 27): results, annotations,
tokens files and split lists are validated with one-line errors naming the file and the item, JSON has depth
and size limits, long captions are cut, odd images convert in bounded memory, and named pipes are refused."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from conftest import EXAMPLE_IMAGE
from PIL import Image

from captioner import images, io
from captioner.cli.files import read_references, read_results
from captioner.cli.main import main
from captioner.images import BadImageError, load_image
from captioner.io import MAX_JSON_DEPTH, parse_json, read_json
from captioner.metrics.captions import MAX_SCORED_WORDS, check_coverage, cut, evaluate_captions

DEEP = "[" * 100_000 + "]" * 100_000  # a RecursionError traceback in json.loads


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the command; it must fail with exactly one ``captioner: error:`` line and print nothing else."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and err.count("\n") == 1 and err.startswith("captioner: error: "), err
    return err


# ---------------------------------------------------------------- JSON limits


def test_json_depth_and_size_are_limited_with_the_file_named(tmp_path, monkeypatch):
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    with pytest.raises(ValueError, match=f"^{deep}: cannot read JSON \\(nested more than {MAX_JSON_DEPTH} levels"):
        read_json(deep)
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(ValueError, match="nested more than"):
        parse_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(ValueError, match="nested more than"):
        parse_json('{"a": ' * 100 + "1" + "}" * 100)
    monkeypatch.setattr(io, "MAX_FILE_BYTES", 4)
    (tmp_path / "big.json").write_text('["a", "b"]')
    with pytest.raises(ValueError, match=f"^{tmp_path / 'big.json'}: 0 MiB, over the 0 MiB limit"):
        read_json(tmp_path / "big.json")


# ---------------------------------------------------------------- results


@pytest.mark.parametrize(
    "text, says",
    [
        (DEEP, "nested more than"),
        ('{"image_id": 1, "caption": "a"}', "expected a list of records"),  # one object is not a JSON list
        ('[{"image_id": 1, "caption": "a"}, 7]', "item 2 is not a JSON object but 7"),
        (
            '[{"image_id": 1, "caption": "a"}, {"image_id": 2, "caption": 5}]',
            "record 2: the caption of image 2 must be a string, not 5",
        ),
        ('[{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}]', "record 2: image 1 has more than one"),
        ('[{"image_id": 1}]', "record 1: expected records with 'image_id' and 'caption' (missing 'caption')"),
        (
            '{"image_id": 1, "caption": "a"}\n{"image_id": 2, "caption": "b"\n',
            "neither a JSON list nor JSON lines (line 2",
        ),
    ],
    ids=["deep", "an object", "a number", "caption 5", "duplicate", "no caption", "broken line"],
)
def test_bad_results_are_one_line_naming_the_file_and_record(tmp_path, text, says):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        read_results(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and says in message and "\n" not in message, message


# ---------------------------------------------------------------- annotations, tokens files, split lists


def _coco(
    images=({"id": 1}, {"id": 2}),
    annotations=({"id": 10, "image_id": 1, "caption": "A dog. "}, {"id": 11, "image_id": 1, "caption": "a cat"}),
) -> dict:
    return {"images": list(images), "annotations": list(annotations)}


def test_coco_annotations_are_read_as_pycocotools_reads_them(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(
        json.dumps(
            _coco(
                annotations=[
                    {"id": 10, "image_id": 1, "caption": "A dog. "},
                    {"id": 11, "image_id": 9, "caption": "not listed"},
                ]
            )
        )
    )
    assert read_references(path) == {1: ["A dog."]}  # image 2 has no captions, image 9 is not listed


@pytest.mark.parametrize(
    "data, says",
    [
        ([{"image_id": 1, "caption": "a"}], "expected a JSON object with 'images' and 'annotations'"),  # an assertion
        ({"annotations": []}, "missing 'images'"),
        (
            _coco(annotations=[{"id": 1, "image_id": 1, "caption": 5}]),
            "annotations item 1: the caption of image 1 must be a string, not 5",
        ),
        (
            _coco(annotations=[{"id": 1, "image_id": [1], "caption": "a"}]),
            "annotations item 1: image_id must be a number",
        ),
        (
            _coco(annotations=[{"id": 1, "image_id": 1, "caption": "a"}, {"id": 1, "image_id": 2, "caption": "b"}]),
            "annotations item 2: annotation id 1 appears twice",
        ),
        (_coco(images=[{"id": 1}, {"id": 1}]), "images item 2: image 1 is listed twice"),
        (_coco(images=[{"file_name": "x.jpg"}]), "images item 1: missing 'id'"),
        ({"images": {"id": 1}, "annotations": []}, "images: expected a list of records"),
    ],
    ids=[
        "a list",
        "no images",
        "caption 5",
        "list image_id",
        "duplicate annotation",
        "duplicate image",
        "no id",
        "images not a list",
    ],
)
def test_bad_coco_annotations_are_one_line_naming_the_file_and_item(tmp_path, data, says):
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as error:
        read_references(path)
    assert str(error.value).startswith(f"{path}: ") and says in str(error.value), str(error.value)


def test_deep_annotations_and_bad_tokens_files_are_one_line_errors_naming_the_file(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": "1.jpg", "caption": "a dog"}]))
    deep, no_tab, latin1, binary, tokens = (
        tmp_path / n for n in ("deep.json", "no_tab.txt", "latin1.txt", "split.txt", "tokens.txt")
    )
    deep.write_text(DEEP)
    no_tab.write_text("1.jpg#0\ta dog\n1.jpg#1 a cat\n")
    latin1.write_bytes("1.jpg#0\tun caf\xe9\n".encode("latin-1"))
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    tokens.write_text("1.jpg#0\ta dog\n")
    for argv, named in [
        (["--coco-annotations", str(deep)], deep),
        (["--flickr8k-tokens", str(no_tab)], no_tab),
        (["--flickr8k-tokens", str(latin1)], latin1),
        (["--flickr8k-tokens", str(tokens), "--split-list", str(binary)], binary),
    ]:
        err = one_line_error(capsys, ["eval", str(results), *argv])
        assert f"captioner: error: {named}: " in err, err
    results.write_text(DEEP)
    assert f"error: {results}: nested more than" in one_line_error(
        capsys, ["eval", str(results), "--flickr8k-tokens", str(tokens)]
    )


# ---------------------------------------------------------------- long captions


def test_captions_over_200_words_are_cut_with_one_warning():
    assert cut("a  dog\nruns") == "a  dog\nruns"  # short captions are scored as they are
    assert cut(" ".join(["dog"] * 10_000)) == " ".join(["dog"] * MAX_SCORED_WORDS)
    long = {f"{i}.jpg": " ".join(["a dog runs on the grass"] * 2_000) for i in range(8)}  # 10,000 words each
    references = {i: ["a dog runs on the grass", " ".join(["a cat"] * 5_000)] for i in long}
    warnings = [w for w in check_coverage(long, references) if "words" in w]
    assert warnings == [
        f"8 image(s) have captions of over {MAX_SCORED_WORDS} words (first: '0.jpg'); "
        f"scoring their first {MAX_SCORED_WORDS} words"
    ]
    metrics = ["Bleu", "ROUGE_L", "CIDEr"]  # METEOR (Java) reads the same cut captions; it alone takes seconds
    scores = evaluate_captions(long, references, metrics, tokenizer="python")
    cut_scores = evaluate_captions(
        {i: cut(c) for i, c in long.items()},
        {i: [cut(r) for r in refs] for i, refs in references.items()},
        metrics,
        "python",
    )
    assert scores.corpus == cut_scores.corpus and scores.corpus["Bleu_1"] > 0


# ---------------------------------------------------------------- images


@pytest.fixture
def small_bands(monkeypatch):
    monkeypatch.setattr(images, "BAND_ROWS", 7)  # many bands, and a short last one, on a 50-row image


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_16_bit_and_float_images_convert_band_by_band_as_one_stretch(small_bands, mode):
    values = (np.arange(50 * 33).reshape(50, 33) * 37 % 60_000 + 1_000).astype(
        np.uint16 if mode == "I;16" else np.int32 if mode == "I" else np.float32
    )
    img = Image.fromarray(values)
    assert img.mode == mode
    expected = ((values - values.min()) / (values.max() - values.min()) * 255.0).round().astype(np.uint8)
    rgb = images._to_8bit_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == (33, 50)
    assert np.array_equal(np.asarray(rgb), np.repeat(expected[:, :, None], 3, axis=2))
    flat = images._to_8bit_rgb(Image.fromarray(np.full((50, 33), 7, values.dtype)))
    assert not np.asarray(flat).any()  # one value everywhere: black, as before


def test_large_images_are_shrunk_towards_the_size_hint_before_their_colour_conversion(small_bands):
    values = (np.arange(100 * 70).reshape(100, 70) * 37 % 60_000).astype(np.uint16)
    rgb = images._to_8bit_rgb(Image.fromarray(values), size_hint=20)
    assert rgb.mode == "RGB" and rgb.size == (
        24,
        34,
    )  # reduced by 3 (the largest factor keeping both sides >= 20), rounding up
    gray = images._to_8bit_rgb(Image.fromarray(values)).convert("L")
    assert np.array_equal(np.asarray(rgb)[:, :, 0], np.asarray(gray.reduce(3)))  # the same pixels, block-averaged
    assert images._to_8bit_rgb(Image.fromarray(values), size_hint=40).size == (70, 100)  # under twice the hint
    rgba = Image.new("RGBA", (90, 60), (10, 20, 30, 255))
    assert images._to_8bit_rgb(rgba, size_hint=30).size == (45, 30)


def test_palette_1_bit_and_alpha_images_are_shrunk_band_by_band_as_if_whole(small_bands):
    # Image.reduce takes neither mode: converting the whole image first cost 600 MB at 80 megapixels (issue 38).
    rng = np.random.default_rng(1)
    palette = Image.fromarray(rng.integers(0, 256, (100, 70, 3), dtype=np.uint8)).quantize(16)
    white = Image.new("RGBA", (24, 34), (255, 255, 255, 255))
    assert images._to_8bit_rgb(palette, size_hint=20).tobytes() == palette.convert("RGB").reduce(3).tobytes()
    palette.info["transparency"] = 3
    want = Image.alpha_composite(white, palette.convert("RGBA").reduce(3)).convert("RGB")
    assert images._to_8bit_rgb(palette, size_hint=20).tobytes() == want.tobytes()
    rgba = Image.fromarray(rng.integers(0, 256, (100, 70, 4), dtype=np.uint8), "RGBA")  # reduce copies it whole
    assert images._shrunk(rgba, 20).tobytes() == rgba.reduce(3).tobytes()
    bilevel = palette.convert("1")
    want = bilevel.convert("L").reduce(3).convert("RGB")
    assert images._to_8bit_rgb(bilevel, size_hint=20).tobytes() == want.tobytes()


def test_transparent_images_convert_band_by_band_onto_white(small_bands):
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (50, 33, 4), dtype=np.uint8), "RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    assert images._to_8bit_rgb(rgba).tobytes() == Image.alpha_composite(white, rgba).convert("RGB").tobytes()
    palette = rgba.convert("RGB").quantize(16)
    palette.info["transparency"] = 3
    want = Image.alpha_composite(white, palette.convert("RGBA")).convert("RGB")
    assert images._to_8bit_rgb(palette).tobytes() == want.tobytes()
    del palette.info["transparency"]
    assert images._to_8bit_rgb(palette).tobytes() == palette.convert("RGB").tobytes()


def _returns_within(seconds: float, call) -> object:
    """``call()``'s outcome (its value, or the exception it raised); fails if it blocks past ``seconds``."""
    outcome = []

    def run():
        try:
            outcome.append(call())
        except BaseException as e:  # noqa: BLE001 - handed to the test
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"blocked for more than {seconds} s"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_a_named_pipe_named_directly_is_refused_not_read(tmp_path, weights_dir, capsys):
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    error = _returns_within(5, lambda: load_image(fifo))  # opening it would wait for a writer forever
    assert isinstance(error, BadImageError) and str(error) == f"{fifo}: not a regular file, not an image"
    code = _returns_within(60, lambda: main(["caption", str(fifo), str(EXAMPLE_IMAGE), "--weights", str(weights_dir)]))
    out, err = capsys.readouterr()
    assert code == 1 and f"{fifo}: not a regular file" in err and out.startswith(str(EXAMPLE_IMAGE))
    if (weights_dir / "vqa" / "config.json").exists():
        code = _returns_within(60, lambda: main(["ask", str(fifo), "what is it", "--weights", str(weights_dir)]))
        out, err = capsys.readouterr()
        assert code == 1 and out == "" and err == f"captioner: error: {fifo}: not a regular file, not an image\n"
