"""Your own data: an ``imagefolder`` (images and a metadata.csv/jsonl) for captions and questions, malformed
dataset files as one-line errors naming the file and the row, and ``--init-from`` growing the vocabulary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from synthetic import draw, make_flickr8k, shape_items

from captioner.checkpoint import load_checkpoint
from captioner.cli.main import main
from captioner.data.captions import load_flickr8k, read_flickr8k_tokens
from captioner.data.datasets import DatasetSpec, load_caption_dataset, load_vqa_dataset, vqa_split_exists
from captioner.data.vqa import load_daquar, split_by_image
from captioner.decoder import grow_word_rows
from captioner.pipeline import Captioner
from captioner.pretrained import DEFAULT, get_weights
from captioner.train.caption import TrainConfig, starting_point, train
from captioner.vocab import Vocabulary

NEW_WORD = "zorb"  # in no vocabulary here: not in the shapes' captions, nor in the shipped weights'
TINY = dict(batch_size=4, embed_dim=32, hidden_dim=32, image_dim=32, dropout=0.0, lr=1e-2, flip_augment=False)


def captions_of(name: str, color: str, shape: str) -> list[dict]:
    return [{"caption": f"a {color} {NEW_WORD}"}] * 2


def write_metadata(root: Path, rows: list[dict], fmt: str = "csv") -> None:
    """``rows`` as the folder's only metadata file, ``metadata.csv`` or ``metadata.jsonl``."""
    for old in ("metadata.csv", "metadata.jsonl"):
        (root / old).unlink(missing_ok=True)
    if fmt == "jsonl":
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)


def make_imagefolder(root: Path, rows_of=captions_of, fmt: str = "csv") -> Path:
    """The 8 shape images under ``root/photos/`` and a metadata file of the rows ``rows_of`` gives for each."""
    (root / "photos").mkdir(parents=True, exist_ok=True)
    rows = []
    for name, color, shape, _ in shape_items():
        draw(color, shape).save(root / "photos" / name)
        rows += [{"file_name": f"photos/{name}", **r} for r in rows_of(name, color, shape)]
    write_metadata(root, rows, fmt)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("own") / "my_photos")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


# ---------------------------------------------------------------- reading an imagefolder


def test_imagefolder_captions_gather_rows_and_hold_out_a_fifth_of_the_images(folder):
    train_items = load_caption_dataset("imagefolder", folder, "train")
    dev = load_caption_dataset("imagefolder", folder, "dev")
    assert (len(train_items), len(dev)) == (6, 2)  # round(8 * 0.2) images held out, the same ones every time
    assert not {i.image_id for i in train_items} & {i.image_id for i in dev}
    assert [i.image_id for i in dev] == [i.image_id for i in load_caption_dataset("imagefolder", folder, "dev")]
    item = train_items[0]
    assert item.image_id.startswith("photos/") and item.path.is_file() and len(item.captions) == 2


def test_imagefolder_split_column_and_jsonl_lists(tmp_path):
    splits = iter(["validation", "train", "train", "train"] * 2)
    make_imagefolder(
        tmp_path,
        lambda name, color, shape: [{"captions": [f"a {color} {NEW_WORD}", "a shape"], "split": next(splits)}],
        fmt="jsonl",
    )
    dev = load_caption_dataset("imagefolder", tmp_path, "dev")  # Hugging Face's "validation" is our dev
    assert len(dev) == 2 and dev[0].captions == [f"a red {NEW_WORD}", "a shape"]
    assert len(load_caption_dataset("imagefolder", tmp_path, "train")) == 6
    with pytest.raises(ValueError, match="no test rows"):
        load_caption_dataset("imagefolder", tmp_path, "test")


def test_imagefolder_questions(tmp_path):
    make_imagefolder(tmp_path, lambda name, color, shape: [{"question": "what color is it?", "answer": color}])
    train_q = load_vqa_dataset("imagefolder", tmp_path, "train")
    assert len(train_q) == 6 and train_q[0].answers == ["red"] and vqa_split_exists("imagefolder", tmp_path, "dev")
    assert not vqa_split_exists("imagefolder", tmp_path, "test")
    write_metadata(
        tmp_path,
        [
            {
                "file_name": "photos/1000_redcircle.jpg",
                "question": "what color is it?",
                "answer": "red",
                "answers": ["red"] * 3,
            }
        ],
        fmt="jsonl",
    )
    with pytest.raises(ValueError, match=r"metadata.jsonl: line 1: give answer or answers, not both"):
        load_vqa_dataset("imagefolder", tmp_path, "train")


def test_imagefolder_vqa_trains_and_validates_on_held_out_images(tmp_path, cache, capsys):
    root = make_imagefolder(
        tmp_path / "q",
        lambda name, color, shape: [{"question": "what shape is it?", "answers": [shape] * 3}],
        fmt="jsonl",
    )
    assert (
        main(
            [
                "train-vqa",
                "--data",
                f"imagefolder:{root}",
                "--out",
                str(tmp_path / "run"),
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--embed-dim",
                "8",
                "--hidden-dim",
                "8",
                "--fused-dim",
                "8",
                "--mlp-dim",
                "8",
                "--cache-dir",
                str(cache),
            ]
        )
        == 0
    )
    assert '"imagefolder"' in capsys.readouterr().out  # validated on its own dev images


MALFORMED = [  # (metadata file, its text, what the one-line error says)
    ("metadata.csv", "file_name\nphotos/a.jpg\n", "metadata.csv: missing column(s) caption"),
    (
        "metadata.csv",
        "file_name,caption,file_name\nphotos/a.jpg,a cat,photos/b.jpg\n",
        "column(s) 'file_name' more than once",
    ),
    ("metadata.csv", "file_name,caption\nphotos/a.jpg,a cat\nphotos/a.jpg\n", "metadata.csv: row 3: 1 fields"),
    ("metadata.csv", "file_name,caption\nphotos/a.jpg,a cat,extra\n", "metadata.csv: row 2: 3 fields"),
    ("metadata.csv", "file_name,caption\nphotos/a.jpg,a cat\nphotos/a.jpg,  \n", "row 3: caption is empty"),
    ("metadata.csv", "file_name,caption\nphotos/nope.jpg,a cat\n", "row 2: no image 'photos/nope.jpg'"),
    ("metadata.csv", "file_name,caption\n../outside.jpg,a cat\n", "row 2: file_name '../outside.jpg' is outside"),
    ("metadata.csv", "file_name,caption\n/etc/passwd.jpg,a cat\n", "row 2: file_name '/etc/passwd.jpg' is outside"),
    ("metadata.csv", "file_name,caption\nmetadata.csv,a cat\n", "row 2: file_name 'metadata.csv' is not an image"),
    (
        "metadata.csv",
        "file_name,caption,split\nphotos/a.jpg,a cat,train\nphotos/b.jpg,a dog,tset\n",
        "row 3: split must be one of train, dev, validation, val, test, not 'tset'",
    ),
    ("metadata.csv", "file_name,caption\n", "metadata.csv: no rows"),
    ("metadata.csv", b"file_name,caption\nphotos/a.jpg,caf\xe9\n", "metadata.csv: not UTF-8 text"),
    ("metadata.csv", "file_name,caption\nphotos/a.jpg," + "x" * 200_000 + "\n", "metadata.csv: row 2: not CSV (field"),
    (
        "metadata.jsonl",
        '{"file_name": "photos/a.jpg", "caption": "a", "caption": "b"}\n',
        "metadata.jsonl: line 1: not a JSON object (key 'caption' appears more than once)",
    ),
    (
        "metadata.jsonl",
        '{"file_name": "photos/a.jpg", "caption": "a"}\n\n[1, 2]\n',
        "metadata.jsonl: line 3: expected a JSON object, not list",
    ),
    (
        "metadata.jsonl",
        '{"file_name": "photos/a.jpg", "captions": ["a", 5]}\n',
        "line 1: captions item 2: caption is not a string",
    ),
    ("metadata.jsonl", '{"file_name": "photos/a.jpg"}\n', "line 1: give caption or captions"),
    (
        "metadata.jsonl",
        '{"file_name": "photos/a.jpg", "caption": "a"}\n{"caption": "b"}\n',
        "line 2: file_name is missing",
    ),
]


@pytest.mark.parametrize("name, text, message", MALFORMED, ids=[m[2][:40] for m in MALFORMED])
def test_malformed_metadata_is_one_line_naming_the_file_and_row(tmp_path, name, text, message):
    (tmp_path / "photos").mkdir()
    for image in ("a.jpg", "b.jpg", "c.jpg"):
        draw("red", "circle", 32).save(tmp_path / "photos" / image)
    (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        load_caption_dataset("imagefolder", tmp_path, "train")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_imagefolder_needs_one_metadata_file_and_enough_images(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither metadata.csv nor metadata.jsonl"):
        load_caption_dataset("imagefolder", tmp_path, "train")
    make_imagefolder(tmp_path, lambda name, color, shape: [{"caption": "a shape"}] if color == "red" else [])
    with pytest.raises(ValueError, match="2 image.s. are too few"):  # nothing to hold out: the split would be empty
        load_caption_dataset("imagefolder", tmp_path, "dev")
    (tmp_path / "metadata.jsonl").write_text("")
    with pytest.raises(ValueError, match="both metadata.csv and metadata.jsonl"):
        load_caption_dataset("imagefolder", tmp_path, "train")


def test_bad_imagefolder_is_one_line_from_the_cli(tmp_path, capsys):
    root = make_imagefolder(tmp_path / "bad")
    with open(root / "metadata.csv", "a") as f:
        f.write("photos/missing.jpg,a cat\n")
    assert main(["train", "--data", f"imagefolder:{root}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("captioner: error: ") and "metadata.csv: row 18: no image" in err


# ---------------------------------------------------------------- issue 27: malformed datasets


@pytest.mark.parametrize("weight", ["1e300", "1e12", "101", "nan"])
def test_dataset_weight_is_bounded(tmp_path, capsys, weight):
    with pytest.raises(ValueError, match="at most 100"):
        DatasetSpec.parse(f"flickr8k:data:{weight}")
    assert main(["train", "--data", f"flickr8k:{tmp_path}:{weight}", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert DatasetSpec.parse("flickr8k:data:100").weight == 100


def test_dataset_without_folder_is_one_line(capsys, tmp_path):
    with pytest.raises(ValueError, match="flickr8k needs a dataset folder"):
        load_caption_dataset("flickr8k", None, "train")
    assert main(["train", "--data", "flickr8k", "--out", str(tmp_path)]) == 2
    assert "give its folder" in capsys.readouterr().err


def test_empty_or_tabless_tokens_file_is_one_line_naming_it(tmp_path, capsys):
    root = make_flickr8k(tmp_path / "f")
    tokens = root / "Flickr8k.token.txt"
    tokens.write_text("1000_redcircle.jpg#0 a red circle\n")
    with pytest.raises(ValueError, match=r"Flickr8k.token.txt: line 1: expected IMAGE#N<TAB>caption"):
        read_flickr8k_tokens(tokens)
    tokens.write_text("\n")
    with pytest.raises(ValueError, match=r"Flickr8k.token.txt: no captions"):
        load_flickr8k(root)
    assert main(["train", "--data", f"flickr8k:{root}", "--out", str(tmp_path / "run")]) == 2  # was an IndexError
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Flickr8k.token.txt: no captions" in err


@pytest.mark.parametrize(
    "text, message",
    [
        ("question,image_id\nwhat is it,image1\n", "qa_train.csv: missing column(s) answer"),  # was a KeyError
        ("question,answer,image_id\nwhat is it,table\n", "qa_train.csv: row 2: 2 fields, but the header has 3"),
        ("question,answer,image_id\nwhat is it,table,image1\nwhat,chair,image9\n", "row 3: no image 'image9'"),
    ],
)
def test_malformed_daquar_is_one_line_naming_the_file_and_row(tmp_path, text, message):
    (tmp_path / "images").mkdir()
    draw("red", "circle", 32).save(tmp_path / "images" / "image1.jpg")
    (tmp_path / "qa_train.csv").write_text(text)
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        load_daquar(tmp_path)
    assert message in str(error.value)


def test_split_by_image_is_unchanged(tmp_path):
    """DAQUAR's held-out images (split_by_image now shares its rule with the imagefolder's)."""
    from captioner.data.vqa import VQAExample

    examples = [VQAExample(i, "q", f"image{i % 10}", Path("x"), ["a"]) for i in range(30)]
    _, val = split_by_image(examples, 0.2, seed=0)
    assert sorted({e.image_id for e in val}) == ["image4", "image6"]  # as before the refactor


# ---------------------------------------------------------------- --init-from: a grown vocabulary


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory, cache) -> Path:
    """A tiny caption model trained on the shapes' captions (which never use NEW_WORD)."""
    root = tmp_path_factory.mktemp("init")
    train(
        TrainConfig(
            data=(f"flickr8k:{make_flickr8k(root / 'data')}",),
            out=str(root / "run"),
            epochs=2,
            min_count=1,
            cache_dir=str(cache),
            **TINY,
        )
    )
    return root / "run" / "best"


def test_init_from_adds_new_words_and_keeps_the_trained_rows(tiny_init, folder):
    cfg = TrainConfig(data=(f"imagefolder:{folder}",), init_from=str(tiny_init), min_count=3)
    items = load_caption_dataset("imagefolder", folder, "train")
    vocab, weights, _, config = starting_point(cfg, None, items)
    old_vocab, (old, _) = Vocabulary.load(tiny_init / "vocab.json"), load_checkpoint(tiny_init)
    assert vocab.words[: len(old_vocab)] == old_vocab.words and vocab.words[len(old_vocab) :] == [NEW_WORD]
    assert vocab.encode(NEW_WORD, add_markers=False) == [len(old_vocab)]  # not <unk>
    assert config["decoder"]["vocab_size"] == len(vocab)
    for name in ("embed.weight", "out.weight", "out.bias"):
        assert weights[name].shape[0] == len(vocab) and torch.equal(weights[name][: len(old_vocab)], old[name])
    assert weights["out.bias"][-1] == old["out.bias"].min()  # starts as unlikely as the rarest known word
    assert all(
        torch.equal(weights[k], v) for k, v in old.items() if k not in ("embed.weight", "out.weight", "out.bias")
    )
    rare = TrainConfig(data=cfg.data, init_from=cfg.init_from, min_count=100)  # seen too rarely: <unk> as before
    assert len(starting_point(rare, None, items)[0]) == len(old_vocab)


def test_grow_word_rows_refuses_to_shrink():
    weights = {"embed.weight": torch.ones(5, 2), "out.weight": torch.ones(5, 3), "out.bias": torch.zeros(5)}
    assert grow_word_rows(weights, 7)["out.weight"].shape == (7, 3)
    with pytest.raises(ValueError, match="more than the 4 words"):
        grow_word_rows(weights, 4)


def test_init_from_takes_a_weights_entry_name(folder):
    entry = get_weights(DEFAULT["caption"])
    if not (entry.path / "config.json").exists():
        pytest.skip("no shipped weights")
    cfg = TrainConfig(data=(f"imagefolder:{folder}",), init_from=entry.name, min_count=1)
    vocab, weights, _, _ = starting_point(cfg, None, load_caption_dataset("imagefolder", folder, "train"))
    shipped = Vocabulary.load(entry.path / "vocab.json")
    assert vocab.words[-1] == NEW_WORD and len(vocab) == len(shipped) + 1 == weights["out.bias"].shape[0]


def test_fine_tune_learns_a_new_word(tiny_init, folder, cache, tmp_path):
    out = tmp_path / "tuned"
    train(
        TrainConfig(
            data=(f"imagefolder:{folder}",),
            init_from=str(tiny_init),
            out=str(out),
            epochs=12,
            min_count=1,
            cache_dir=str(cache),
            **TINY,
        )
    )
    model = Captioner.from_pretrained(out / "last", load_vqa=False, precision="fp32")
    captions = [model.caption(it.path, method="greedy") for it in load_caption_dataset("imagefolder", folder, "train")]
    assert all(NEW_WORD in c.split() for c in captions), captions


def test_an_image_in_two_splits_is_refused(tmp_path):
    """Dev scores measured on a training image would flatter the model (issue 38)."""
    splits = iter(["train", "dev"])
    root = make_imagefolder(
        tmp_path / "mine",
        lambda name, color, shape: [
            {"caption": f"a {color} {shape}", "split": next(splits, "train")}
            for _ in range(2 if name.startswith("1000") else 1)
        ],
    )
    with pytest.raises(
        ValueError,
        match=r"is in the dev split, but row \d+ put it in train; an image belongs to "
        "one split",
    ):
        load_caption_dataset("imagefolder", root, "train")
