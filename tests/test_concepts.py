"""Concept detectors learnt from captions (issue 41): they learn planted concepts, the existence rule reads plurals
and synonyms, the colour rule binds a colour to the object, and no dev image is trained on."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from captioner.concepts import ConceptConfig, ConceptDetector, Concepts, ConceptVocab, named_objects, noisy_or_loss
from captioner.look import look, question_object
from captioner.metrics.concepts import average_precision, pope_items, yes_no_scores
from captioner.train.concepts import ConceptTrainConfig, calibrate_existence, mine_vocab, train_concepts

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}


def _image(left: str, right: str | None) -> Image.Image:
    """A 224 px photo with a coloured disc on the left, and maybe a coloured square on the right."""
    img = Image.new("RGB", (224, 224), (240, 240, 240))
    d = ImageDraw.Draw(img)
    d.ellipse((10, 60, 100, 150), fill=COLOURS[left])
    if right:
        d.rectangle((130, 60, 210, 150), fill=COLOURS[right])
    return img


def _flickr(root: Path, n_train: int, dev_word: str = "zebra") -> Path:
    """A Flickr8k-layout folder: captions name the disc's colour, and the square when there is one; the dev
    images' captions alone use ``dev_word``."""
    rng = random.Random(0)
    (root / "images").mkdir(parents=True)
    lines, splits = [], {"train": [], "dev": []}
    for i in range(n_train + 4):
        split = "train" if i < n_train else "dev"
        left, right = rng.choice(list(COLOURS)), rng.choice([None, *COLOURS])
        name = f"{i}.jpg"
        _image(left, right).save(root / "images" / name)
        caption = f"a {left} circle" + (f" beside a {right} square" if right else "")
        caption += f" and a {dev_word}" if split == "dev" else ""
        lines += [f"{name}#{k}\t{caption} ." for k in range(2)]
        splits[split].append(name)
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for split, names in splits.items():
        (root / f"Flickr_8k.{split}Images.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("concepts")
    data = _flickr(tmp / "data", 40)
    cfg = ConceptTrainConfig(
        data=(f"flickr8k:{data}",),
        out=str(tmp / "run"),
        epochs=40,
        batch_size=8,
        lr=3e-3,
        min_images=2,
        val_fraction=0.25,
        hidden_dim=32,
        dropout=0.0,
        cache_dir=str(tmp / "cache"),
        threads=1,
    )
    train_concepts(cfg)
    return tmp / "run" / "best", tmp / "cache", data


def test_the_detectors_learn_planted_concepts_and_where_they_are(trained):
    folder, *_ = trained
    concepts = Concepts.load(folder)
    assert {"red", "blue", "circle", "square"} <= set(concepts.vocab.words)
    scores = json.loads((folder / "config.json").read_text())["validation"]
    assert scores["mAP"] > 0.9, scores  # on held-out training images
    from captioner.encoder import build_encoder

    encoder = build_encoder("efficientnet-lite0")
    features = encoder(
        torch.stack([encoder.preprocess(_image("red", "blue")), encoder.preprocess(_image("blue", None))])
    )
    p, _ = concepts.detect(features)
    square, red = concepts.vocab.index["square"], concepts.vocab.index["red"]
    assert p[0, square] > p[1, square] + 0.1 and p[0, red] > p[1, red] + 0.1  # the photo with them ranks first


def _bus_in_region_10() -> tuple[Concepts, torch.Tensor]:
    """Concepts bus, red and blue, and region logits ``(49, 3)`` of a photo with a blue bus in region 10 (row 2,
    column 4 of 7) and red elsewhere."""
    vocab = ConceptVocab(["bus", "red", "blue"], {"bus": ["bus"], "buses": ["bus"], "red": ["red"], "blue": ["blue"]})
    model = ConceptDetector(ConceptConfig(3, 4, hidden_dim=3, dropout=0))
    existence = {"slope": 1.0, "intercept": 0.0, "threshold": 0.5, "sure_yes": 0.9, "sure_no": 0.1}
    logits = torch.full((49, 3), -5.0)
    logits[10, 0], logits[11, 0] = 5.0, 3.0  # the bus: mostly in region 10, a little in region 11
    logits[:, 1], logits[10, 1], logits[10, 2] = 3.0, -3.0, 3.0
    return Concepts(model, vocab, "efficientnet-lite0", existence), logits


def test_the_colour_rule_reads_the_colour_where_the_object_is():
    concepts, logits = _bus_in_region_10()
    answer = look(concepts, torch.tensor([0.99, 0.99, 0.5]), logits, "What color is the bus?")
    assert answer.kind == "colour" and answer.answers[0][0] == "blue" and answer.evidence[0].region == 10
    captions_say_red = lambda thing, colours: torch.tensor([0.0 if c == "red" else -20.0 for c in colours])  # noqa: E731
    answer = look(concepts, torch.tensor([0.99, 0.99, 0.5]), logits, "what is the colour of the bus?", captions_say_red)
    assert answer.answers[0][0] == "red"  # the caption decoder's word, added to the detectors'


@pytest.mark.parametrize("question", ["is there a bus?", "what color is the bus?"])
def test_the_evidence_carries_where_the_object_is_over_the_grid(question):
    concepts, logits = _bus_in_region_10()
    answer = look(concepts, torch.tensor([0.99, 0.99, 0.5]), logits, question)
    for seen in answer.evidence:  # the colour's too: read where the bus is, so the bus's map
        assert len(seen.where) == 49 and sum(seen.where) == pytest.approx(1.0)
        assert max(range(49), key=seen.where.__getitem__) == seen.region == 10
        assert seen.where == pytest.approx(torch.softmax(logits[:, 0], 0).tolist())
        assert seen.where[11] > 0.1 > seen.where[12]  # a map, not only its peak


def test_no_dev_image_is_trained_on(trained):
    folder, cache, _ = trained
    vocab = json.loads((folder / "concepts.json").read_text())
    assert "zebra" not in vocab["words"]  # only the dev captions use it
    grids = [np.load(f, mmap_mode="r") for f in cache.glob("*.npy")]
    assert [g.shape[0] for g in grids] == [40]  # the 40 training images, not the 4 of dev


def test_the_existence_rule_reads_plurals_and_synonyms():
    vocab = mine_vocab([["a man rides a bike", "two puppies and a dog"]] * 3 + [["a cat on a sofa"]] * 3, 50, 2)
    assert vocab.concept_of("bikes") == "bicycle" and vocab.concept_of("bicycle") == "bicycle"
    assert vocab.concept_of("puppies") == "dog" and vocab.concept_of("people") == "person"
    assert vocab.concept_of("a couch") == "couch" and vocab.concept_of("red bus") is None
    assert question_object("Is there a dog in the photo?") == ("existence", "dog")
    assert question_object("are there any bikes?") == ("existence", "bikes")
    assert question_object("Do you see a cat?") == ("existence", "cat")
    assert question_object("What colour is the bus?") == ("colour", "bus")
    assert question_object("what is the man holding?") is None
    assert named_objects("two puppies beside a hot dog") == {"dog", "hot dog"}


def test_the_existence_answer_follows_the_calibration():
    vocab = ConceptVocab(["dog", "cat"], {"dog": ["dog"], "dogs": ["dog"], "cat": ["cat"]})
    model = ConceptDetector(ConceptConfig(2, 4, hidden_dim=3, dropout=0))
    existence = {"slope": 2.0, "intercept": 2 * 0.8473, "threshold": 0.3}  # P = 1/2 at p = 0.3
    concepts = Concepts(model, vocab, "efficientnet-lite0", existence)
    logits = torch.zeros(49, 2)
    for p, expected in ((0.35, "yes"), (0.25, "no"), (0.9, "yes"), (0.01, "no")):
        answer = look(concepts, torch.tensor([p, 0.5]), logits, "are there dogs?")
        assert answer.answers[0][0] == expected and answer.answers[0][1] >= 0.5
    near, far = (look(concepts, torch.tensor([p, 0.5]), logits, "is there a dog?") for p in (0.32, 0.95))
    assert near.answers[0][1] < 0.6 < 0.95 < far.answers[0][1]  # sure only far from the threshold
    assert look(concepts, torch.tensor([0.5, 0.5]), logits, "is there a horse?") is None  # unknown: the VQA head's
    fence = ConceptVocab(["fence"], {"fence": ["fence"]})
    concepts = Concepts(ConceptDetector(ConceptConfig(1, 4, hidden_dim=3)), fence, "efficientnet-lite0", existence)
    assert look(concepts, torch.tensor([0.9]), torch.zeros(49, 1), "is there a fence?") is None  # no COCO object


def test_calibration_balances_present_and_absent():
    rng = np.random.default_rng(0)
    present = rng.random(4000) < 0.1  # absent objects far outnumber present ones
    p = np.clip(np.where(present, 0.4, 0.1) + rng.normal(0, 0.08, 4000), 1e-3, 1)
    cal = calibrate_existence(p[:, None], present[:, None].astype(np.int8))
    assert 0.2 < cal["threshold"] < 0.3 and cal["slope"] > 0 and cal["held_out_accuracy"] > 0.9


def test_noisy_or_loss_and_scores():
    log_absent = torch.log(torch.tensor([[0.5, 1 - 1e-9]]))  # P = 0.5 and P = 1e-9
    loss = noisy_or_loss(log_absent, torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(np.log(2) / 2, rel=1e-3)
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.9]), np.array([0])) is None
    s = yes_no_scores([True, True, False, False], [True, False, False, True])
    assert s["accuracy"] == 0.5 and s["yes_ratio"] == 0.5 and s["f1"] == 0.5
    items = pope_items([["a dog and a cat", "a dog", "a cat and a dog"]], per_image=3)
    assert {(o, present) for _, o, present in items if present} == {("dog", True), ("cat", True)}
    assert sum(not present for *_, present in items) == 2


def test_the_command_line_scores_and_shows_concepts(trained, tmp_path, capsys):
    from captioner.cli.main import main

    folder, cache, data = trained
    out = tmp_path / "scores.json"
    args = ["concepts", "eval", "--weights", str(folder), "--data", f"flickr8k:{data}", "--json", str(out), "-q"]
    assert main(args) == 0
    scores = json.loads(out.read_text())
    assert scores["mAP"] > 0.5 and "colour" in scores["by_class"]
    capsys.readouterr()
    image = tmp_path / "photo.png"
    _image("red", "blue").save(image)
    assert main(["concepts", "show", str(image), str(tmp_path / "missing.jpg"), "--weights", str(folder)]) == 1
    shown, errors = capsys.readouterr()
    assert shown.startswith(str(image)) and "square" in shown.split("\t")[1]
    assert errors.count("\n") == 1 and "missing.jpg" in errors  # one line for the bad file; the good one shown
    assert main(["concepts", "show", str(image), "--weights", str(tmp_path)]) == 2  # not concept weights


def test_a_vqa_model_can_read_the_concepts_beside_the_image(trained, tmp_path):
    import shutil

    from test_vqa import TINY, make_daquar

    from captioner.pipeline import VQAPredictor
    from captioner.train.vqa import VQATrainConfig, train_vqa

    folder, *_ = trained
    daquar = make_daquar(tmp_path / "daquar")
    cfg = VQATrainConfig(
        data=(f"daquar:{daquar}",),
        out=str(tmp_path / "run"),
        val_fraction=0.0,
        epochs=3,
        batch_size=4,
        cache_dir=str(tmp_path / "cache"),
        threads=1,
        concepts=str(folder),
        **TINY,
    )
    train_vqa(cfg)
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["model"]["concept_dim"] == len(Concepts.load(folder).vocab.words) > 0
    weights = tmp_path / "weights"
    shutil.copytree(tmp_path / "run" / "best", weights / "vqa")
    with pytest.raises(ValueError, match="concept weights in concepts/"):
        VQAPredictor.from_pretrained(weights)  # the concepts it reads are not beside it
    shutil.copytree(folder, weights / "concepts")
    model = VQAPredictor.from_pretrained(weights)
    answers = model.ask(_image("red", None), "what color is the shape", top_k=2)
    assert len(answers) == 2 and 0 < answers[0][1] <= 1


def test_the_shipped_weights_answer_existence_from_the_concepts_and_the_app_says_why():
    from conftest import EXAMPLE_IMAGE, SHIPPED_WEIGHTS

    from captioner.app.handlers import Demo
    from captioner.images import load_image
    from captioner.pipeline import Captioner

    if not (SHIPPED_WEIGHTS / "concepts" / "config.json").exists():
        pytest.skip("no shipped concept weights")
    model = Captioner.from_pretrained(SHIPPED_WEIGHTS, precision="fp32")
    assert model.vqa.concepts is not None and model.vqa.words is not None
    person, elephant = (model.ask(EXAMPLE_IMAGE, f"is there {q} in the photo?") for q in ("a person", "an elephant"))
    assert person[0][0] == "yes" and elephant[0][0] == "no"  # a tennis player, no elephant
    demo = Demo(model)
    why, shown, label = demo.evidence({"path": str(EXAMPLE_IMAGE)}, "Are there any people?")
    assert "<b>person</b>" in why and "person detector" in label
    row, column = (int(n) - 1 for n in re.search(r"row (\d), column (\d) of 7", why).groups())
    # The photo as loaded, darkened away from the cell named: the 7 x 7 grid stretched over the whole photo.
    photo = np.asarray(load_image(EXAMPLE_IMAGE, size_hint=model.image_size), dtype=np.float64)
    assert shown.size == (photo.shape[1], photo.shape[0])
    kept = np.asarray(shown, dtype=np.float64).sum(-1) / np.maximum(photo.sum(-1), 1)  # shown / photo, by pixel
    height, width = kept.shape
    rows, columns = np.arange(height) * 7 // height, np.arange(width) * 7 // width
    inside = (rows[:, None] == row) & (columns[None, :] == column)
    centre = kept[(2 * row + 1) * height // 14, (2 * column + 1) * width // 14]
    assert centre > 0.95 and kept[inside].mean() > kept[~inside].mean() + 0.2 and kept.min() < 0.3
    assert demo.evidence({"path": str(EXAMPLE_IMAGE)}, "what sport is this?") == ("", None, "")  # no concept
