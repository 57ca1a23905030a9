"""Weights entries: listed, consistent with the shipped folders, loadable by name or folder, and a folder's own
preprocessing honoured."""
from __future__ import annotations

import json
import shutil

import pytest

from captioner import Captioner
from captioner.encoder import ENCODERS, Preprocessing
from captioner.pretrained import DEFAULT, get_weights, list_weights, resolve_weights, weights_root


def test_entries_are_listed_with_what_they_need():
    entries = list_weights()
    assert [w.name for w in entries[:2]] == [DEFAULT["caption"], DEFAULT["vqa"]]
    assert [w.name for w in list_weights("vqa")] == [DEFAULT["vqa"]]
    for w in entries:
        assert w.task in ("caption", "vqa") and w.encoder in ENCODERS and w.recipe.startswith("captioner train")
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
