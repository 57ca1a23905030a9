"""A weights folder is user input: every file is checked against its schema before anything is built (issue 27),
and a bad one is a one-line error naming the file and the field, within 2 s."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from captioner.checkpoint import save_checkpoint
from captioner.decoder import CaptionDecoder, DecoderConfig
from captioner.encoder import build_encoder
from captioner.io import MAX_JSON_DEPTH
from captioner.pretrained import load_pretrained, load_vqa
from captioner.vqa import VQAConfig, VQAModel

WORDS = ["<pad>", "<start>", "<end>", "<unk>", "a", "dog"]


def caption_folder(folder: Path, **config) -> Path:
    """A tiny valid caption weights folder, with ``config`` added to its config.json."""
    decoder = CaptionDecoder(DecoderConfig(len(WORDS), 1280, 8, 8, 8))
    save_checkpoint(
        folder,
        decoder,
        {
            "task": "caption",
            "encoder": "efficientnet-lite0",
            "decoder": asdict(decoder.config),
            "decoding": {"beam_size": 3},
            "preprocessing": {"image_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3},
            **config,
        },
        {"vocab.json": {"max_length": 20, "words": WORDS}},
    )
    return folder


def vqa_folder(folder: Path) -> Path:
    model = VQAModel(VQAConfig(len(WORDS), 2, 1280, embed_dim=4, hidden_dim=4, fused_dim=4, mlp_dim=4))
    save_checkpoint(
        folder,
        model,
        {"task": "vqa", "encoder": "efficientnet-lite0", "model": asdict(model.config)},
        {"vocab.json": {"max_length": 30, "words": WORDS}, "answers.json": ["yes", "no"]},
    )
    return folder


def edit_json(folder: Path, name: str, edit) -> None:
    data = json.loads((folder / name).read_text())
    (folder / name).write_text(json.dumps(edit(data) or data))


def edit_tensors(folder: Path, edit) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({k: edit(v) for k, v in tensors.items()}, str(folder / "model.safetensors"))


def set_in(section: str, **values):
    return lambda folder: edit_json(folder, "config.json", lambda c: c[section].update(values))


def words(*extra):
    return lambda folder: edit_json(folder, "vocab.json", lambda v: v.update(words=WORDS[:4] + list(extra)))


BAD_CAPTION_FOLDERS = {  # what breaks the folder: (the file, what the one line says after "FILE: ")
    "length_penalty 1e308": (
        set_in("decoding", length_penalty=1e308),
        "config.json",
        "decoding: length_penalty must be at least 0 and at most 10, not 1e+308",
    ),
    "length_penalty a string": (
        set_in("decoding", length_penalty="1"),
        "config.json",
        "decoding: length_penalty must be a number, not '1'",
    ),
    "no_repeat_ngram a string": (
        set_in("decoding", no_repeat_ngram="3"),
        "config.json",
        "decoding: no_repeat_ngram must be a whole number, not '3'",
    ),
    "beam_size 100000": (
        set_in("decoding", beam_size=100000),
        "config.json",
        "decoding: beam_size must be at least 1 and at most 50, not 100000",
    ),
    "decoding not an object": (
        lambda f: edit_json(f, "config.json", lambda c: c.update(decoding=[3])),
        "config.json",
        "decoding must be a JSON object, not [3]",
    ),
    "JSON nested 100,000 deep": (
        lambda f: (f / "config.json").write_text("[" * 100_000 + "]" * 100_000),
        "config.json",
        f"cannot read JSON (nested more than {MAX_JSON_DEPTH} levels deep)",
    ),
    "hidden_dim past the range": (
        set_in("decoder", hidden_dim=10**9),
        "config.json",
        "decoder: hidden_dim must be at least 1 and at most 16384, not 1000000000",
    ),
    # In range, but 13 GB of LSTM: refused from the meta-device shapes before it is allocated (46 s before).
    "hidden_dim huge": (
        set_in("decoder", hidden_dim=16384, embed_dim=16384, image_dim=16384),
        "model.safetensors",
        "the weights do not fit the model its config.json describes (wrong shape: embed.weight",
    ),
    "feature_dim not the encoder's": (
        set_in("decoder", feature_dim=2048),
        "config.json",
        "decoder: feature_dim 2048, but efficientnet-lite0 gives 1280 features",
    ),
    "unknown encoder": (
        lambda f: edit_json(f, "config.json", lambda c: c.update(encoder="x" * 100)),
        "config.json",
        "encoder must be one of efficientnet-lite0",
    ),
    "image_size 0": (
        set_in("preprocessing", image_size=0),
        "config.json",
        "preprocessing: image_size must be at least 32 and at most 1024, not 0",
    ),
    "image_size negative": (
        set_in("preprocessing", image_size=-224),
        "config.json",
        "preprocessing: image_size must be at least 32 and at most 1024, not -224",
    ),
    "image_size 60000": (
        set_in("preprocessing", image_size=60000),
        "config.json",
        "preprocessing: image_size must be at least 32 and at most 1024, not 60000",
    ),
    "std [0,0,0]": (
        set_in("preprocessing", std=[0, 0, 0]),
        "config.json",
        "preprocessing: std must be at least 0.01 and at most 10, not 0",
    ),
    "mean of 2 numbers": (
        set_in("preprocessing", mean=[0.5, 0.5]),
        "config.json",
        "preprocessing: mean must be 3 numbers (red, green, blue), not (0.5, 0.5)",
    ),
    "confidence past 1": (
        lambda f: edit_json(f, "config.json", lambda c: c.update(confidence={"caption": 1.5})),
        "config.json",
        "confidence.caption must be at least 0 and at most 1, not 1.5",
    ),
    "confidence of a typo": (
        lambda f: edit_json(f, "config.json", lambda c: c.update(confidence={"captoin": 0.5})),
        "config.json",
        "confidence has no threshold 'captoin'",
    ),
    "vocab words that are ints": (words(5, "dog"), "vocab.json", "words item 5 must be a non-empty string, not 5"),
    "vocab words that are null": (words("a", None), "vocab.json", "words item 6 must be a non-empty string, not None"),
    "a vocab of duplicates": (words("a", "a"), "vocab.json", "words item 6, 'a', appears more than once"),
    "vocab max_length a string": (
        lambda f: edit_json(f, "vocab.json", lambda v: v.update(max_length="20")),
        "vocab.json",
        "max_length must be a whole number, not '20'",
    ),
    "int64 tensors": (
        lambda f: edit_tensors(f, lambda t: (t * 100).long()),
        "model.safetensors",
        "embed.weight holds int64 values, not float32",
    ),
    "tensors x 1e30": (
        lambda f: edit_tensors(f, lambda t: t * 1e30),
        "model.safetensors",
        "embed.weight holds values past ±10000",
    ),
}


@pytest.mark.parametrize("name", BAD_CAPTION_FOLDERS)
def test_a_bad_caption_folder_is_one_line_naming_the_file_and_field_within_2_s(tmp_path, name):
    make_bad, file, says = BAD_CAPTION_FOLDERS[name]
    folder = caption_folder(tmp_path / "caption")
    make_bad(folder)
    start = time.perf_counter()
    with pytest.raises(ValueError) as error:
        load_pretrained(folder, with_vqa=False)
    assert time.perf_counter() - start < 2.0
    message = str(error.value)
    assert message.startswith(f"{folder / file}: {says}") and "\n" not in message, message


@pytest.mark.parametrize(
    "answers, says",
    [
        ([None, None], "the answer list item 1 must be a string, not None"),
        (["yes", "yes"], "the answer list item 2, 'yes', appears more than once"),
        ({"yes": 1}, "the answer list must be a list of strings"),
    ],
)
def test_a_bad_answer_list_is_one_line(tmp_path, answers, says):
    folder = vqa_folder(tmp_path)
    (folder / "answers.json").write_text(json.dumps(answers))
    with pytest.raises(ValueError, match=f"^{folder / 'answers.json'}: {says}"):
        load_vqa(folder)


RULE = {"vqa_weight": 1.0, "oov_bias": -2.0, "word_weight": 0.5, "unknown_weight": -1.0}


@pytest.mark.parametrize(
    "choices, says",
    [
        (
            {"vqa_weight": 1.0},
            "choices must give vqa_weight, oov_bias, word_weight, unknown_weight, and may give concept_weight, "
            "no_concept_weight",
        ),
        ({**RULE, "bias": 1.0}, "choices must give vqa_weight"),
        ({**RULE, "oov_bias": 1e300}, "choices.oov_bias must be at least -100 and at most 100"),
        ({**RULE, "word_weight": "big"}, "choices.word_weight must be a number"),
        ({**RULE, "vqa_weight": float("nan")}, "choices.vqa_weight must be"),
    ],
)
def test_a_bad_multiple_choice_rule_is_one_line(tmp_path, choices, says):
    folder = vqa_folder(tmp_path)
    edit_json(folder, "config.json", lambda c: c.update(choices=choices))
    with pytest.raises(ValueError, match=f"^{folder / 'config.json'}: {says}"):
        load_vqa(folder)


def test_vqa_weights_bring_their_own_multiple_choice_rule(tmp_path):
    from captioner.choices import SHIPPED, ChoiceWeights
    from captioner.pipeline import VQAPredictor

    folder = vqa_folder(tmp_path)
    assert load_vqa(folder).choices is None
    assert VQAPredictor.from_pretrained(folder, precision="fp32").choice_weights == SHIPPED  # none recorded
    edit_json(folder, "config.json", lambda c: c.update(choices=RULE))
    assert load_vqa(folder).choices == ChoiceWeights(**RULE)
    assert VQAPredictor.from_pretrained(folder, precision="fp32").choice_weights == ChoiceWeights(**RULE)


def test_a_good_folder_loads_with_its_confidence_thresholds(tmp_path):
    caption, _ = load_pretrained(caption_folder(tmp_path / "plain"), with_vqa=False)
    assert caption.confidence == {} and caption.decoding.beam_size == 3
    caption, _ = load_pretrained(caption_folder(tmp_path / "sure", confidence={"caption": 0.42}), with_vqa=False)
    assert caption.confidence == {"caption": 0.42}
    assert load_vqa(vqa_folder(tmp_path / "vqa")).answers == ["yes", "no"]


# ---------------------------------------------------------------- --encoder-weights FILE


def _state_dict_file(path: Path, edit=None) -> Path:
    """The real EfficientNet-Lite0 weights, edited, as a torch file."""
    state = dict(build_encoder("efficientnet-lite0", trainable_blocks=1).backbone.state_dict())
    torch.save(edit(state) if edit else state, path)
    return path


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: p.write_text("root:x:0:0:root:/root:/bin/bash\n"), "cannot read weights"),  # was an IndexError
        (lambda p: torch.save([torch.zeros(3)], p), "cannot read weights (not a state dict of named tensors)"),
        (
            lambda p: _state_dict_file(p, lambda s: {**s, "_conv_stem.weight": torch.zeros(3, 3)}),
            "the weights do not fit EfficientNet (wrong shape: _conv_stem.weight)",
        ),
        (
            lambda p: _state_dict_file(p, lambda s: {k: v for k, v in s.items() if k != "_conv_head.weight"}),
            "the weights do not fit EfficientNet (missing _conv_head.weight)",
        ),
        (
            lambda p: _state_dict_file(p, lambda s: {**s, "_conv_stem.weight": s["_conv_stem.weight"].long()}),
            "_conv_stem.weight holds int64 values, not float32",
        ),
    ],
    ids=["a text file", "a list", "a wrong shape", "a missing tensor", "int64 weights"],
)
def test_bad_encoder_weights_are_one_line_naming_the_file(tmp_path, make, says):
    path = tmp_path / "encoder.pth"
    make(path)
    with pytest.raises(ValueError) as error:
        build_encoder("efficientnet-lite0", str(path))
    assert str(error.value).startswith(f"{path}: {says}") and "\n" not in str(error.value), str(error.value)


def test_fine_tuned_encoder_blocks_that_do_not_fit_are_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^encoder\.\* weights: the weights do not fit efficientnet-lite0 \(wrong "):
        build_encoder("efficientnet-lite0", tuned={"_conv_head.weight": torch.zeros(2, 2)})


# ---------------------------------------------------------------- cells.json, the cell atlas


def atlas_folder(folder: Path) -> Path:
    """:func:`caption_folder` with the cell atlas of its decoder beside it."""
    from captioner.io import write_json
    from captioner.lecture.atlas import ATLAS_FILE, build_atlas

    caption_folder(folder)
    loaded, _ = load_pretrained(folder, with_vqa=False)
    captions = [[4, 5, 4], [5, 4], [4]] * 10
    write_json(folder / ATLAS_FILE, build_atlas(loaded.model, torch.randn(len(captions), 1280), captions, loaded.vocab))
    return folder


def edit_cell(**values):
    return lambda folder: edit_json(folder, "cells.json", lambda a: a["cells"]["h"][3].update(values))


BAD_ATLASES = {
    "not an atlas": (lambda f: (f / "cells.json").write_text("[1, 2]"), "not a cell atlas"),
    "a state the decoder lacks": (
        lambda f: edit_json(f, "cells.json", lambda a: a["cells"].update(q=[])),
        "cells must describe the states c, h of the decoder, not 'c, h, q'",
    ),
    "too few cells": (
        lambda f: edit_json(f, "cells.json", lambda a: a["cells"]["c"].pop() and None),
        "cells.c must be a list of 8 cells (the decoder's), not 7",
    ),
    "a label of 1000 characters": (edit_cell(label="x" * 1000), "cells.h[3].label must be one line of 1 to 80"),
    "a label that is a number": (edit_cell(label=5), "cells.h[3].label must be one line of 1 to 80 characters, not 5"),
    "an unknown kind of tracking": (edit_cell(tracks="quotes"), "cells.h[3].tracks must be one of position, word"),
    "a correlation past 1": (edit_cell(position_r=3.0), "cells.h[3].position_r must be at least -1 and at most 1"),
    "a missing label": (
        lambda f: edit_json(f, "cells.json", lambda a: a["cells"]["h"][3].pop("label") and None),
        "missing 'label'",
    ),
    "words that are not pairs": (edit_cell(after=["on"]), "cells.h[3].after item 1 must be a [word, effect] pair"),
}


@pytest.mark.parametrize("name", BAD_ATLASES)
def test_a_bad_cell_atlas_is_one_line_naming_the_file_and_field(tmp_path, name):
    make_bad, says = BAD_ATLASES[name]
    folder = atlas_folder(tmp_path / "caption")
    make_bad(folder)
    with pytest.raises(ValueError) as error:
        load_pretrained(folder, with_vqa=False)
    message = str(error.value)
    assert message.startswith(f"{folder / 'cells.json'}: {says}") and "\n" not in message, message


def test_a_good_atlas_loads_with_its_weights(tmp_path):
    caption, _ = load_pretrained(atlas_folder(tmp_path / "caption"), with_vqa=False)
    assert set(caption.cells) == {"c", "h"} and all(len(cells) == 8 for cells in caption.cells.values())
    assert load_pretrained(caption_folder(tmp_path / "plain"), with_vqa=False)[0].cells == {}


def _add_sparse_tensor(file: Path, name: str, gib: int) -> None:
    """Append a ``gib`` GiB float32 tensor to a safetensors file, as a sparse hole: no disk, no memory to make."""
    data = file.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    header[name] = {"dtype": "F32", "shape": [gib * 2**28], "data_offsets": [end, end + gib * 2**30]}
    new = json.dumps(header).encode()
    new += b" " * (-(8 + len(new)) % 8)
    with open(file, "wb") as f:
        f.write(len(new).to_bytes(8, "little") + new + data[8 + size :])
        f.truncate(8 + len(new) + end + gib * 2**30)


def test_a_huge_extra_tensor_is_refused_from_the_header_before_it_is_read(tmp_path):
    import resource

    folder = caption_folder(tmp_path / "caption")
    _add_sparse_tensor(folder / "model.safetensors", "extra.weight", 3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(
        ValueError,
        match="the weights do not fit the model its config.json describes "
        r"\(unexpected extra.weight\)",
    ) as error:
        load_pretrained(folder, with_vqa=False)
    assert str(error.value).startswith(str(folder / "model.safetensors"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: the 3 GiB never mapped in
