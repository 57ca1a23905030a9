"""Weights entries: listed, consistent with the shipped folders, loadable by name or folder, and a folder's own
preprocessing honoured."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import EXAMPLE_IMAGE

from captioner import Captioner
from captioner.encoder import ENCODERS, Preprocessing
from captioner.pretrained import DEFAULT, get_weights, list_weights, resolve_weights, weights_root


def test_entries_are_listed_with_what_they_need():
    entries = list_weights()
    assert [w.name for w in entries[:2]] == [DEFAULT["caption"], DEFAULT["vqa"]]
    assert [w.name for w in list_weights("vqa")] == [DEFAULT["vqa"]]
    for w in entries:
        if w.task == "lm":  # character models read no images
            assert w.encoder == "" and w.preprocessing is None and w.recipe.startswith("captioner lm train")
            assert w.data_license and w.scores
            continue
        trained = ("captioner train", "captioner concepts train")  # VQA weights that read concepts train those first
        assert w.task in ("caption", "vqa") and w.encoder in ENCODERS and w.recipe.startswith(trained)
        assert w.data_license and w.scores and w.preprocessing.image_size == ENCODERS[w.encoder].image_size
    assert get_weights(DEFAULT["caption"]).decoding["beam_size"] == 3
    with pytest.raises(ValueError, match="no weights entry"):
        get_weights("nope")


@pytest.mark.parametrize("task", ["caption", "vqa"])
def test_shipped_folders_are_their_entries(task):
    entry = get_weights(DEFAULT[task])
    if not (entry.path / "config.json").exists():
        pytest.skip("no shipped weights")
    config = json.loads((entry.path / "config.json").read_text())
    assert config["encoder"] == entry.encoder
    assert {k: v for k, v in entry.decoding.items() if k in config.get("decoding", {})} == config.get("decoding", {})
    assert resolve_weights(None, task) == resolve_weights(weights_root(), task) == (entry.path, entry)
    with pytest.raises(ValueError, match="not"):
        resolve_weights(DEFAULT["vqa" if task == "caption" else "caption"], task)


def test_a_folder_keeps_its_recorded_preprocessing(tmp_path):
    entry = get_weights(DEFAULT["caption"])
    if not (entry.path / "config.json").exists():
        pytest.skip("no shipped weights")
    folder = tmp_path / "caption"
    shutil.copytree(entry.path, folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["preprocessing"] == entry.preprocessing.to_dict()  # recorded at training time
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "preprocessing"}))
    by_name = Captioner.from_pretrained(entry.name, load_vqa=False)
    plain = Captioner.from_pretrained(folder, load_vqa=False)  # no "preprocessing": the encoder's current one
    assert plain.encoder.preprocessing == ENCODERS[entry.encoder].preprocessing
    assert by_name.decoding == plain.decoding and by_name.encoder.preprocessing == entry.preprocessing
    old = Preprocessing(224)  # ImageNet mean/std, as EfficientNet-Lite inputs were scaled before
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "preprocessing": old.to_dict()}))
    recorded = Captioner.from_pretrained(folder, load_vqa=False)
    assert recorded.encoder.preprocessing == old
    assert recorded.encoder.mean.flatten().tolist() == pytest.approx(list(old.mean))


def test_the_rnn_entry_is_its_folder_and_loads_by_name_beside_the_lstm():
    from captioner.lecture.inside import gradient_flow, other_cell, state_kinds
    from captioner.pretrained import CELL_ENTRIES

    entry = get_weights(CELL_ENTRIES["rnn"])
    if not (entry.path / "config.json").exists():
        pytest.skip("no shipped RNN weights")
    config = json.loads((entry.path / "config.json").read_text())
    assert "rnn" in entry.name and config["decoder"]["cell"] == "rnn" and entry.scores
    assert resolve_weights(entry.name, "caption") == (entry.path, entry)
    model = Captioner.from_pretrained(entry.name, load_vqa=False)
    assert state_kinds(model) == ("h",) and set(model.cells) == {"h"}  # its own cell atlas
    other = other_cell(model)  # the LSTM, for the gradient plot beside it
    assert other.model.config.cell == "lstm" and other.entry.name == CELL_ENTRIES["lstm"]
    features = model.preprocess([EXAMPLE_IMAGE])
    caption = model.caption_features(features)[0][0]
    for decoder in (None, other):  # the caption's gradient flow in the RNN and in the LSTM
        norms = gradient_flow(model, features[0], caption, decoder)
        assert norms.shape == (len(caption.words),) and bool((norms > 0).all())


def test_a_folder_whose_caption_is_a_link_to_an_entry_still_answers_with_its_own_vqa(tmp_path):
    """A folder of your own with caption/ linked to the shipped caption weights and a vqa/ of its own."""
    from captioner.pretrained import get_weights, load_pretrained

    shipped = get_weights("caption-flickr8k-coco-v3").path
    if not (shipped / "config.json").exists():
        pytest.skip("no shipped caption weights")
    (tmp_path / "caption").symlink_to(shipped, target_is_directory=True)
    shutil.copytree(get_weights("vqa-daquar-coco-v4").path, tmp_path / "vqa")
    _, vqa = load_pretrained(tmp_path)
    assert vqa is not None and vqa.path == tmp_path / "vqa" and vqa.entry is None
