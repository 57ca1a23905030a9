"""VQA: data formats and soft targets, the model and its question-only ablation, training, resume, CLI, API."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from synthetic import COLORS, SHAPES, draw

from captioner import Captioner
from captioner.checkpoint import load_checkpoint, save_checkpoint
from captioner.cli.main import main
from captioner.data.datasets import load_vqa_dataset
from captioner.data.vqa import daquar_answer, load_daquar, split_by_image
from captioner.decoder import CaptionDecoder, DecoderConfig
from captioner.pipeline import VQAPredictor
from captioner.train.vqa import (
    VQATrainConfig,
    answer_index,
    build_answer_vocab,
    build_vqa_set,
    collate,
    soft_targets,
    train_vqa,
)
from captioner.vocab import Vocabulary, pad_ids
from captioner.vqa import VQAConfig, VQAModel

TINY = dict(embed_dim=16, hidden_dim=32, num_layers=1, fused_dim=32, mlp_dim=32, dropout=0.0)


def make_daquar(root: Path) -> Path:
    """A DAQUAR-layout folder: one image per colour and shape, questions that need the image to answer."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i, (color, shape) in enumerate((c, s) for c in COLORS for s in SHAPES):
        image_id = f"image{i + 1}"
        draw(color, shape).save(root / "images" / f"{image_id}.jpg")
        rows += [
            ("what color is the shape", color, image_id),
            ("what shape is in the picture", shape, image_id),
            ("what is in the picture", f"{shape}, {color}", image_id),
        ]  # a DAQUAR-style list answer
    with open(root / "qa_train.csv", "w", newline="") as f:
        csv.writer(f).writerows([("question", "answer", "image_id"), *rows])
    return root


def train_config(root: Path, out: Path, **overrides) -> VQATrainConfig:
    base = dict(
        data=(f"daquar:{root}",),
        out=str(out),
        val_fraction=0.0,
        epochs=50,
        batch_size=4,
        lr=3e-3,
        cache_dir=str(out.parent / "cache"),
        threads=1,
        **TINY,
    )
    return VQATrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def daquar(tmp_path_factory) -> Path:
    return make_daquar(tmp_path_factory.mktemp("daquar"))


@pytest.fixture(scope="module")
def weights(daquar, tmp_path_factory) -> Path:
    """A VQA model overfit on the generated set through ``captioner train-vqa``, in a weights/ layout."""
    root = tmp_path_factory.mktemp("weights")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert (
        main(
            [
                "train-vqa",
                "--data",
                f"daquar:{daquar}",
                "--out",
                str(root / "run"),
                "--val-fraction",
                "0",
                "--epochs",
                "100",
                "--batch-size",
                "4",
                "--lr",
                "0.003",
                "--threads",
                "1",
                "--cache-dir",
                str(root / "cache"),
                *flags,
            ]
        )
        == 0
    )
    (root / "run" / "best").rename(root / "vqa")
    return root


# ---------------------------------------------------------------- data


def test_daquar_lists_are_one_order_free_class(daquar):
    assert daquar_answer("table, chair") == daquar_answer("Chair,table ") == "chair, table"
    examples = load_daquar(daquar)
    assert len(examples) == 24 and examples[2].answers == ["circle, red"]


def test_validation_split_is_by_image(daquar):
    train, val = split_by_image(load_daquar(daquar), 0.25, seed=3)
    assert len({e.image_id for e in val}) == 2
    assert not {e.image_id for e in train} & {e.image_id for e in val}
    assert len(train) + len(val) == 24


def make_vqa_v2(root: Path) -> Path:
    """Official VQA v2 files for the train split: questions JSON, annotations JSON with ten answers, COCO images."""
    (root / "train2014").mkdir(parents=True)
    for image_id in (42, 43):
        draw("red", "circle").save(root / "train2014" / f"COCO_train2014_{image_id:012d}.jpg")
    humans = [
        ["Two"] * 1 + ["2"] * 3 + ["3"] * 2 + ["three"] + ["4"] * 3,  # "two" and "2" are one answer
        ["yes"] * 10,
    ]
    questions = [
        {"image_id": 42 + i, "question": q, "question_id": 420 + i}
        for i, q in enumerate(["How many circles are there?", "Is it red?"])
    ]
    annotations = [
        {
            "question_id": 420 + i,
            "image_id": 42 + i,
            "question_type": "how many",
            "answer_type": ["number", "yes/no"][i],
            "multiple_choice_answer": a[0],
            "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": k + 1} for k, x in enumerate(a)],
        }
        for i, a in enumerate(humans)
    ]
    (root / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(
        json.dumps(
            {
                "info": {},
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "data_subtype": "train2014",
                "questions": questions,
                "license": {},
            }
        )
    )
    (root / "v2_mscoco_train2014_annotations.json").write_text(
        json.dumps(
            {"info": {}, "data_type": "mscoco", "data_subtype": "train2014", "annotations": annotations, "license": {}}
        )
    )
    return root


def test_vqa_v2_soft_score_targets(tmp_path):
    examples = load_vqa_dataset("vqa2", make_vqa_v2(tmp_path), "train")
    assert [len(e.answers) for e in examples] == [10, 10]
    assert examples[0].answer_type == "number" and examples[0].path.name == "COCO_train2014_000000000042.jpg"
    answers = build_answer_vocab(examples, top_k=3)
    assert answers == ["yes", "2", "3"]  # "4" (3 votes) loses the tie to "3" (2 + "three"); top-3 keeps 3
    index = answer_index(answers)
    # 4 humans said two: 1.0; 3 said three: 0.9; "4" is outside the vocabulary
    assert soft_targets(examples[0].answers, index) == {1: 1.0, 2: pytest.approx(0.9)}
    assert soft_targets(examples[1].answers, index) == {0: 1.0}
    one = ["cat"] + ["dog"] * 9
    assert soft_targets(one, {"cat": 0, "dog": 1}) == {0: pytest.approx(0.3), 1: 1.0}
    two = ["cat"] * 2 + ["dog"] * 8
    assert soft_targets(two, {"cat": 0}) == {0: pytest.approx(0.6)}
    vocab = Vocabulary.build((e.question for e in examples), min_count=1)
    data = build_vqa_set(
        examples, torch.zeros(2, 5).numpy(), None, {e.path: i for i, e in enumerate(examples)}, vocab, index
    )
    _, _, _, targets = collate(data, [0, 1], len(answers))
    assert torch.allclose(targets, torch.tensor([[0.0, 1.0, 0.9], [1.0, 0.0, 0.0]]))


def test_mirrored_images_come_with_left_and_right_swapped(daquar):
    examples = load_daquar(daquar)[:1]
    examples[0].question = "what is left of the circle on the right"
    vocab = Vocabulary.build([examples[0].question], min_count=1)
    feats, mirrored = torch.zeros(1, 3).numpy(), torch.ones(1, 3).numpy()
    data = build_vqa_set(examples, feats, mirrored, {examples[0].path: 0}, vocab, {"red": 0})
    plain, flipped = collate(data, [0, 0], 1, [False, True])[:2], collate(data, [0], 1, [True])[:2]
    assert vocab.decode(plain[1][0].tolist()) == examples[0].question.split()
    assert vocab.decode(flipped[1][0].tolist()) == "what is right of the circle on the left".split()
    assert plain[0][0].sum() == 0 and plain[0][1].sum() == 3 and flipped[0].sum() == 3


def test_train_on_vqa_v2_files_scores_with_the_soft_metric(tmp_path):
    root = make_vqa_v2(tmp_path / "vqa")
    best = train_vqa(train_config(root, tmp_path / "run", data=(f"vqa2:{root}",), val_split="train", epochs=30))
    # "yes" earns 1; on the count "2" earns 1 and "3" 0.9, so the mean is 1 or 0.95 (exact match: 1 or 0.5)
    assert best["accuracy"] in (pytest.approx(1.0), pytest.approx(0.95))


# ---------------------------------------------------------------- model


def test_question_only_ablation_ignores_the_image():
    torch.manual_seed(0)
    tokens, lengths = pad_ids([[4, 5, 6], [7, 4]])
    blind = VQAModel(VQAConfig(vocab_size=10, num_answers=6, feature_dim=12, use_image=False, **TINY)).eval()
    assert not any(n.startswith("image_proj") for n in blind.state_dict())
    feats = torch.randn(2, 12, requires_grad=True)
    out = blind(feats, tokens, lengths)
    out.sum().backward()
    assert feats.grad is None  # no path from the image to the answer at all
    assert torch.equal(out, blind(torch.randn(2, 12) * 100, tokens, lengths))
    assert torch.equal(out, blind(None, tokens, lengths))
    for fusion in ("product", "concat"):  # the full model does look at the image
        seeing = VQAModel(VQAConfig(vocab_size=10, num_answers=6, feature_dim=12, fusion=fusion, **TINY)).eval()
        assert not torch.allclose(seeing(feats, tokens, lengths), seeing(torch.randn(2, 12), tokens, lengths))


def test_overfits_generated_set_and_needs_the_image(weights, daquar):
    model = VQAPredictor.from_pretrained(weights / "vqa")
    examples = load_daquar(daquar)
    answers = model.answer(model.preprocess([e.path for e in examples]), [e.question for e in examples], top_k=3)
    assert [a[0][0] for a in answers] == [e.answers[0] for e in examples]
    for top in answers:
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_trained_question_only_model_answers_alike_for_every_image(daquar, tmp_path):
    train_vqa(train_config(daquar, tmp_path / "blind", use_image=False, epochs=5))
    blind = VQAPredictor.from_pretrained(tmp_path / "blind" / "best")
    examples = [e for e in load_daquar(daquar) if e.question == "what color is the shape"]
    answers = blind.answer(blind.preprocess([e.path for e in examples]), [e.question for e in examples], top_k=3)
    assert all(a == answers[0] for a in answers)


# ---------------------------------------------------------------- training


def test_resume_continues_exactly(daquar, tmp_path, monkeypatch):
    import captioner.train.vqa as tv

    cfg = dict(val_fraction=0.25, epochs=3, batch_size=4)
    straight = train_vqa(train_config(daquar, tmp_path / "a", **cfg))
    evaluate, calls = tv.evaluate, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(tv, "evaluate", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_vqa(train_config(daquar, tmp_path / "b", **cfg))
    monkeypatch.setattr(tv, "evaluate", evaluate)
    resumed = train_vqa(train_config(daquar, tmp_path / "b", **cfg), resume=True)
    timeless = lambda scores: {k: v for k, v in scores.items() if k != "seconds"}  # wall clock differs
    assert timeless(resumed) == timeless(straight)
    a, b = load_checkpoint(tmp_path / "a" / "last")[0], load_checkpoint(tmp_path / "b" / "last")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- CLI and API


def ask(capsys, *argv) -> tuple[int, str, str]:
    code = main(["ask", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_prints_top_k_answers(weights, daquar, capsys):
    code, out, err = ask(
        capsys,
        str(daquar / "images" / "image1.jpg"),
        "What color is the shape?",
        "--top-k",
        "2",
        "--weights",
        str(weights),
    )
    assert code == 0 and err.count("\n") <= 1
    lines = [line.split("\t") for line in out.splitlines()]
    assert len(lines) == 2 and lines[0][0] == "red" and float(lines[0][1]) > float(lines[1][1])


@pytest.mark.parametrize(
    "question, message",
    [
        ("", "the question is empty (it has no words)"),
        ("?!", "the question is empty (it has no words)"),
        ("what " * 31, "the question is too long (31 words; at most 30)"),
    ],
)
def test_ask_rejects_bad_questions(weights, daquar, capsys, question, message):
    code, out, err = ask(capsys, str(daquar / "images" / "image1.jpg"), question, "--weights", str(weights))
    assert code == 1 and out == "" and err == f"captioner: error: {message}\n"


def test_ask_rejects_bad_images(weights, tmp_path, capsys):
    (tmp_path / "fake.jpg").write_text("not a picture")
    code, out, err = ask(capsys, str(tmp_path / "fake.jpg"), "what color is the shape", "--weights", str(weights))
    assert code == 1 and out == "" and err == f"captioner: error: {tmp_path / 'fake.jpg'}: not an image file\n"
    code, _, err = ask(capsys, str(tmp_path / "missing.jpg"), "what color is the shape", "--weights", str(weights))
    assert code == 1 and err.endswith("missing.jpg: file not found\n") and err.count("\n") == 1


def test_ask_reads_unknown_words_as_unk(weights, daquar, capsys):
    code, out, err = ask(
        capsys, str(daquar / "images" / "image1.jpg"), "what colour is the blob", "--weights", str(weights)
    )
    assert code == 0 and len(out.splitlines()) == 5
    assert err == "captioner: warning: unknown words read as <unk>: colour, blob\n"


def test_ask_usage_errors(weights, capsys):
    assert (
        ask(capsys, "--batch", "qa.csv", "--weights", str(weights))[2]
        == "captioner: error: --batch needs --images DIR, the folder of the images\n"
    )
    assert ask(capsys, "image.jpg")[0] == 2
    code, _, err = ask(capsys, "image.jpg", "what is it", "--weights", str(weights.parent))
    assert code == 2 and err.startswith("captioner: error: no vqa weights in")


def test_ask_batch(weights, daquar, tmp_path, capsys):
    (tmp_path / "fake.jpg").write_text("not a picture")
    qa = tmp_path / "qa.csv"
    qa.write_text(
        "image_id,question\nimage1,what color is the shape\nimage4,what shape is in the picture\n"
        "image1,what shape is in the picture\nnope,what color is the shape\nimage2,\nfake,what is it\n"
    )
    code, _, err = ask(
        capsys,
        "--batch",
        str(qa),
        "--images",
        str(daquar / "images"),
        "--output",
        str(tmp_path / "out.csv"),
        "--weights",
        str(weights),
    )
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert code == 1 and [r["predicted_answer"] for r in rows] == ["red", "square", "circle", "", "", ""]
    assert all(0 < float(r["probability"]) <= 1 for r in rows[:3]) and rows[3]["probability"] == ""
    assert [r["question"] for r in rows] == [line.split(",")[1] for line in qa.read_text().splitlines()[1:]]
    assert f"captioner: row 4: no image named 'nope' in {daquar / 'images'}\n" in err  # data rows, from 1
    assert "captioner: row 5: the question is empty (it has no words)\n" in err
    assert "captioner: 3 of 6 question(s) could not be answered" in err
    (tmp_path / "bad.csv").write_text("image,question\nimage1,what\n")
    code, _, err = ask(
        capsys, "--batch", str(tmp_path / "bad.csv"), "--images", str(daquar / "images"), "--weights", str(weights)
    )
    assert (
        code == 1
        and err
        == f"captioner: error: {tmp_path / 'bad.csv'}: missing column(s) image_id (expected image_id,question)\n"
    )


def test_ask_batch_keeps_every_input_column_and_reads_bom_csv_and_coco_ids(weights, daquar, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    (images / "000000016513.jpg").write_bytes((daquar / "images" / "image1.jpg").read_bytes())  # a red circle
    (images / "image4.jpg").write_bytes((daquar / "images" / "image4.jpg").read_bytes())  # a green square
    qa = tmp_path / "qa.csv"  # DAQUAR's own CSV has an answer column; Excel writes a BOM
    qa.write_bytes(
        "image_id,question,answer\n000000016513,what color is the shape,blue\n"
        "image4,what shape is in the picture,square\nnope,what color is the shape,green\n"
        "image4,what colour is the café,\n".encode("utf-8-sig")
    )
    code, _, err = ask(
        capsys, "--batch", str(qa), "--images", str(images), "-o", str(tmp_path / "out.csv"), "--weights", str(weights)
    )
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image_id", "question", "answer", "predicted_answer", "probability", "sure"]
    assert rows[1][5] == ""  # weights trained here record no "not sure" threshold
    assert [r[:3] for r in rows[1:]] == [line.split(",") for line in qa.read_text("utf-8-sig").splitlines()[1:]]
    assert [r[3] for r in rows[1:4]] == ["red", "square", ""] and rows[3][4] == "" and rows[4][3]
    assert code == 1 and f"captioner: row 3: no image named 'nope' in {images}\n" in err
    assert "captioner: warning: row 4: unknown words read as <unk>: colour, café\n" in err
    (tmp_path / "answered.csv").write_text("image_id,question,predicted_answer\nimage4,what shape,square\n")
    code, _, err = ask(
        capsys, "--batch", str(tmp_path / "answered.csv"), "--images", str(images), "--weights", str(weights)
    )
    assert code == 1 and err.endswith(
        "already has column(s) predicted_answer, where the predictions would go; rename or remove them\n"
    )
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    assert "three new columns, predicted_answer, probability and sure" in " ".join(capsys.readouterr().out.split())


def test_python_api_asks(weights, daquar):
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a"])
    decoder = CaptionDecoder(DecoderConfig(len(vocab), 1280, 8, 8, 8))
    save_checkpoint(
        weights / "caption",
        decoder,
        {"task": "caption", "encoder": "efficientnet-lite0", "decoder": asdict(decoder.config)},
        {"vocab.json": {"max_length": 20, "words": vocab.words}},
    )
    model = Captioner.from_pretrained(weights)
    assert model.vqa.encoder is model.encoder  # one encoder serves captions and questions
    answers = model.ask(daquar / "images" / "image4.jpg", "what shape is in the picture", top_k=3)
    assert answers[0][0] == "square" and len(answers) == 3
