"""Training on several datasets at once: dataset specs, weighted epochs, per-dataset validation, COCO questions."""

from __future__ import annotations

import json

import pytest
import torch
from synthetic import COLORS, make_coco_folder, make_flickr8k
from test_vqa import TINY, make_daquar

from captioner.cli.main import main
from captioner.data.datasets import DatasetSpec, load_vqa_dataset
from captioner.data.questions import generate_questions, write_questions
from captioner.data.vqa import load_coco_questions
from captioner.metrics.vqa import question_metric, vqa_report
from captioner.train.caption import TrainConfig, train
from captioner.train.loop import weighted_rows
from captioner.train.vqa import VQATrainConfig, train_vqa
from captioner.vocab import Vocabulary


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    return {
        "flickr8k": make_flickr8k(root / "flickr8k"),
        "coco": make_coco_folder(root / "coco"),
        "daquar": make_daquar(root / "daquar"),
        "cache": root / "cache",
    }


def test_dataset_spec_reads_name_folder_and_weight():
    assert DatasetSpec.parse("coco:../data/coco") == DatasetSpec("coco", "../data/coco", 1.0)
    assert DatasetSpec.parse("coco:../data/coco:2.5") == DatasetSpec("coco", "../data/coco", 2.5)
    assert DatasetSpec.parse("karpathy:C:/data") == DatasetSpec("karpathy", "C:/data", 1.0)  # a colon in the path
    assert DatasetSpec.parse("easy-vqa") == DatasetSpec("easy-vqa", None, 1.0)
    assert str(DatasetSpec.parse("coco:x:0.5")) == "coco:x:0.5"
    for bad in ("coco:x:0", "coco:x:-1", ":x", "coco:x:inf"):
        with pytest.raises(ValueError, match="NAME:ROOT"):
            DatasetSpec.parse(bad)


def test_weighted_epoch_repeats_and_subsamples_each_dataset():
    groups = [0] * 10 + [1] * 6
    rows = weighted_rows(groups, [0.5, 2.0], torch.Generator().manual_seed(0))
    first, second = [r for r in rows if r < 10], [r for r in rows if r >= 10]
    assert len(first) == 5 and len(set(first)) == 5  # a random half of dataset 0, each row once
    assert sorted(second) == sorted(list(range(10, 16)) * 2)  # every row of dataset 1, twice
    other = weighted_rows(groups, [0.5, 2.0], torch.Generator().manual_seed(1))
    assert len(other) == len(rows) and sorted(other) != sorted(rows)  # same size every epoch, other rows
    assert weighted_rows(groups, [1.0, 1.0], torch.Generator()) == list(range(16))


def test_caption_training_on_a_mix_reports_each_dataset(data, tmp_path, capsys):
    cfg = TrainConfig(
        data=(f"flickr8k:{data['flickr8k']}", f"coco:{data['coco']}:2"),
        out=str(tmp_path / "run"),
        cache_dir=str(data["cache"]),
        epochs=2,
        scst_epochs=1,
        batch_size=4,
        min_count=1,
        embed_dim=16,
        hidden_dim=16,
        image_dim=16,
        dropout=0.0,
        threads=1,
    )
    best = train(cfg)
    assert set(best["datasets"]) == {"flickr8k", "coco"}
    assert best["CIDEr"] == pytest.approx(
        (best["datasets"]["flickr8k"]["CIDEr"] + best["datasets"]["coco"]["CIDEr"]) / 2
    )
    out = capsys.readouterr().out
    assert out.count("flickr8k BLEU-4") == 3 and out.count("coco BLEU-4") == 3 and "mean CIDEr" in out
    assert "epoch 3: train reward" in out  # self-critical training ran on the mix
    vocab = Vocabulary.load(tmp_path / "run" / "best" / "vocab.json")
    assert {"white", "background", "there", "that"} <= set(vocab.words)  # one vocabulary over both datasets
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["training"]["data"] == list(cfg.data)
    assert set(config["validation"]["datasets"]) == {"flickr8k", "coco"}
    assert config["preprocessing"]["image_size"] == 224  # recorded, so the weights keep their meaning


def test_coco_questions_are_scored_softly_with_three_answers_or_more(data):
    examples = load_coco_questions(data["coco"], "dev")
    assert len(examples) == 16 and examples[0].image_id == 16500
    assert examples[0].path.name == "000000016500.jpg" and examples[0].answer_type == "vqa_v2"
    colour, shape = examples[0], examples[1]
    assert (question_metric(colour.answers), question_metric(shape.answers)) == ("vqa", "exact")
    answers = {colour.question_id: colour.answers, shape.question_id: shape.answers}
    assert vqa_report({colour.question_id: "red", shape.question_id: "circle"}, answers)["accuracy"] == 1.0
    # one human in ten said "dark red": soft accuracy 0.3; a single-answer question is all or nothing
    assert vqa_report({colour.question_id: "dark red", shape.question_id: "circles"}, answers)[
        "accuracy"
    ] == pytest.approx(0.15)
    assert load_vqa_dataset("coco", data["coco"], "train")[3].question == "What shape is it?"


def test_train_vqa_on_daquar_and_coco_questions(data, tmp_path, capsys):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert (
        main(
            [
                "train-vqa",
                "--data",
                f"daquar:{data['daquar']}",
                "--data",
                f"coco:{data['coco']}:0.5",
                "--out",
                str(tmp_path / "run"),
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--threads",
                "1",
                "--val-fraction",
                "0.25",
                "--cache-dir",
                str(data["cache"]),
                *flags,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "daquar val loss" in out and "coco val loss" in out and "mean accuracy" in out
    best = json.loads(out.strip().splitlines()[-1])
    assert set(best["datasets"]) == {"daquar", "coco"}
    answers = json.loads((tmp_path / "run" / "best" / "answers.json").read_text())
    assert set(COLORS) <= set(answers) and "circle, red" in answers  # one answer vocabulary, DAQUAR lists kept


def test_generated_questions_mix_in_through_data_and_are_never_validated(data, tmp_path, capsys):
    images = sorted((data["daquar"] / "images").iterdir())
    captions = ["a red bus parked on the street", "two dogs play in the snow", "a cat sitting on a bed"]
    questions = generate_questions([(p.stem, p, [captions[i % 3]]) for i, p in enumerate(images)])
    write_questions(questions, tmp_path / "generated" / "qa_train.jsonl")
    loaded = load_vqa_dataset("generated", tmp_path / "generated", "train")
    assert [(e.image_id, e.path, e.answer_type) for e in loaded] == [(q.image_id, q.path, q.kind) for q in questions]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert (
        main(
            [
                "train-vqa",
                "--data",
                f"daquar:{data['daquar']}",
                "--data",
                f"generated:{tmp_path / 'generated'}:0.5",
                "--out",
                str(tmp_path / "run"),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--threads",
                "1",
                "--val-fraction",
                "0.25",
                "--cache-dir",
                str(data["cache"]),
                *flags,
            ]
        )
        == 0
    )
    best = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(best["datasets"]) == {"daquar"}  # trained on, never validated: real questions pick best/
    answers = json.loads((tmp_path / "run" / "best" / "answers.json").read_text())
    assert {"red", "2", "bed", "yes", "no"} <= set(answers)  # the generated answers are learnt


def test_refuses_to_replace_a_finished_run_or_resume_it_with_other_flags(data, tmp_path):
    cfg = VQATrainConfig(
        data=(f"daquar:{data['daquar']}",),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=4,
        val_fraction=0.0,
        cache_dir=str(data["cache"]),
        threads=1,
        **TINY,
    )
    train_vqa(cfg)
    weights = (tmp_path / "run" / "best" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds a run: add --resume .* or --overwrite"):
        train_vqa(cfg)
    assert (tmp_path / "run" / "best" / "model.safetensors").read_bytes() == weights
    with pytest.raises(ValueError, match="--resume: .* was trained with --hidden-dim 32"):
        train_vqa(VQATrainConfig(**{**cfg.__dict__, "hidden_dim": 64}), resume=True)
    assert train_vqa(cfg, overwrite=True)["epoch"] == 1
