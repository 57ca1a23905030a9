"""One of each: one tokenizer per purpose, one lexicon, one CSV reader with one rule for ragged rows, one
images-by-stem helper, one COCO-caption reader, and each name with one meaning."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from captioner import chat, choices, decoding, images, io, lexicon, vocab
from captioner.data import captions, imagefolder, question_rules, questions
from captioner.data import vqa as vqa_data
from captioner.metrics import captions as caption_metrics
from captioner.metrics import vqa as vqa_metrics

# ---------------------------------------------------------------- tokenizers


def test_each_purpose_has_one_tokenizer():
    """Caption and question words: vocab.tokenize_words; scoring: the PTB port. The old copies are gone."""
    assert not hasattr(vocab, "tokenize")
    assert not hasattr(questions, "tokenize") and not hasattr(question_rules, "tokenize")
    assert not hasattr(chat, "_words") and not hasattr(chat, "_WORD")
    assert not hasattr(vqa_metrics, "_AUXILIARIES")
    assert questions.tokenize_words is vocab.tokenize_words and chat.tokenize_words is vocab.tokenize_words
    assert vqa_metrics.tokenize_words is vocab.tokenize_words


def test_the_tokenizer_keeps_marks_and_case_only_when_asked():
    text = "A man's T-shirt, RED!"
    assert vocab.tokenize_words(text) == ["a", "man", "'s", "t-shirt", "red"]
    assert vocab.tokenize_words(text, question_rules.MARKS) == ["a", "man", "'s", "t-shirt", ",", "red", "!"]
    assert vocab.tokenize_words('the "big" dog?', chat.MARKS, lower=False) == ["the", '"', "big", '"', "dog", "?"]
    assert vocab.tokenize_words("What's it?", lower=False) == ["What", "'s", "it"]


def test_question_types_read_the_question_with_the_one_tokenizer():
    assert vqa_metrics.question_type("Is the café open?") == "yes/no"
    assert vqa_metrics.question_type("How many dogs?") == "number"
    assert vqa_metrics.question_type("what colour-scheme is it?") == "other"  # one hyphenated word


# ---------------------------------------------------------------- the lexicon


@pytest.mark.parametrize(
    "noun, many",
    [
        ("cat", "cats"),
        ("bus", "buses"),
        ("box", "boxes"),
        ("bench", "benches"),
        ("puppy", "puppies"),
        ("toy", "toys"),
        ("man", "men"),
        ("person", "people"),
        ("hot dog", "hot dogs"),
        ("sheep", "sheep"),
        ("skis", "skis"),
        ("broccoli", "broccoli"),
        ("knife", "knives"),
        ("key", "keys"),
    ],
)
def test_the_lexicon_plural_rule(noun, many):
    assert lexicon.plural(noun) == many


def test_the_word_lists_live_in_the_lexicon_alone():
    assert chat.plural is lexicon.plural and question_rules.plural is lexicon.plural
    assert question_rules.COLORS is lexicon.COLORS and chat.AUXILIARIES is vqa_metrics.AUXILIARIES
    assert lexicon.DETERMINERS <= question_rules.DETERMINERS
    assert not [line for line in open(chat.__file__) if line.startswith("from .data")]  # core never imports data/


# ---------------------------------------------------------------- CSV


def test_a_ragged_csv_row_is_a_one_line_error_naming_the_file_and_row(tmp_path):
    """The one rule, for every CSV (ask --batch, DAQUAR, an imagefolder's metadata.csv); rows with no text are
    skipped, and counted."""
    for text, row in [("a,b\n1,2\n3\n", 3), ("a,b\n1,2,3\n", 2), ("a,b\n\n1,2\n,,,x\n", 4)]:
        path = tmp_path / "table.csv"
        path.write_text(text)
        with pytest.raises(ValueError) as error:
            io.read_csv_rows(path)
        assert re.fullmatch(f"{re.escape(str(path))}: row {row}: \\d fields, but the header has 2", str(error.value))


def test_a_csv_with_a_bom_and_crlf_reads_as_plain_utf8(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes("\ufefffile_name , caption\r\nphotos/a.jpg,a café\r\n\r\n".encode())
    assert io.read_csv_rows(path, ("file_name", "caption")) == (
        ["file_name", "caption"],
        [("row 2", {"file_name": "photos/a.jpg", "caption": "a café"})],
    )


def test_an_imagefolder_metadata_csv_with_a_bom_and_crlf(tmp_path):
    (tmp_path / "photos").mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "photos" / name)
    (tmp_path / "metadata.csv").write_bytes(
        b"\xef\xbb\xbffile_name,caption,split\r\nphotos/a.jpg,a dog,train\r\nphotos/b.jpg,a cat,dev\r\n"
    )
    dev = imagefolder.load_imagefolder_captions(tmp_path, "dev")
    assert [(item.image_id, item.captions) for item in dev] == [("photos/b.jpg", ["a cat"])]
    (tmp_path / "metadata.csv").write_bytes(b"\xef\xbb\xbffile_name,caption,split\r\nphotos/a.jpg,a dog\r\n")
    with pytest.raises(ValueError, match=r"metadata\.csv: row 2: 2 fields, but the header has 3$"):
        imagefolder.load_imagefolder_captions(tmp_path, "train")


# ---------------------------------------------------------------- images by stem


def test_two_images_of_one_name_are_refused_naming_both(tmp_path):
    for name in ("1.jpg", "1.png", "2.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with pytest.raises(ValueError) as error:
        images.images_by_stem(tmp_path)
    assert str(error.value) == f"{tmp_path}: 1.jpg and 1.png are both image '1'; rename or remove one"
    (tmp_path / "1.png").unlink()
    (tmp_path / "notes.txt").write_text("not an image")
    assert images.images_by_stem(tmp_path) == {"1": tmp_path / "1.jpg", "2": tmp_path / "2.jpg"}


def test_daquar_and_coco_refuse_two_images_of_one_name(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("image1.jpg", "image1.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / name)
    (tmp_path / "qa_train.csv").write_text("question,answer,image_id\nwhat is it,table,image1\n")
    with pytest.raises(ValueError, match="image1.jpg and image1.png are both image 'image1'"):
        vqa_data.load_daquar(tmp_path)
    (tmp_path / "train").mkdir()
    for name in ("000000000042.jpg", "COCO_train2014_000000000042.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "train" / name)
    (tmp_path / "qa_train.jsonl").write_text(json.dumps({"image_id": 42, "question": "q?", "answers": ["a"]}) + "\n")
    with pytest.raises(ValueError, match="000000000042.jpg and COCO_train2014_000000000042.jpg are both image 42;"):
        vqa_data.load_coco_questions(tmp_path)


# ---------------------------------------------------------------- COCO captions


def test_one_coco_caption_reader_for_training_and_for_references(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(
        json.dumps(
            {
                "images": [
                    {"id": 9, "file_name": "9.jpg"},
                    {"id": 2, "file_name": "2.jpg"},
                    {"id": 5, "file_name": "5.jpg"},
                ],
                "annotations": [
                    {"id": 1, "image_id": 2, "caption": " A dog. "},
                    {"id": 2, "image_id": 9, "caption": "b"},
                    {"id": 3, "image_id": 2, "caption": "c"},
                    {"id": 4, "image_id": 7, "caption": "unlisted"},
                ],
            }
        )
    )
    read = captions.read_coco_captions(path, tmp_path)
    assert [(i.image_id, i.path, i.captions) for i in read] == [
        (9, tmp_path / "9.jpg", ["b"]),
        (2, tmp_path / "2.jpg", ["A dog.", "c"]),
        (5, tmp_path / "5.jpg", []),
    ]
    assert [i.image_id for i in captions.load_coco(path, tmp_path)] == [2, 5, 9]  # pycocotools' order
    from captioner.cli.files import read_references

    assert read_references(path) == {9: ["b"], 2: ["A dog.", "c"]}
    path.write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    with pytest.raises(ValueError, match=r"images item 1: file_name must be a string, not null"):
        captions.load_coco(path, tmp_path)
    assert read_references(path) == {}


# ---------------------------------------------------------------- one name, one meaning


def test_each_name_has_one_meaning():
    assert decoding.MAX_DECODE_WORDS == 100 and caption_metrics.MAX_SCORED_WORDS == 200
    assert not hasattr(decoding, "MAX_WORDS") and not hasattr(caption_metrics, "MAX_WORDS")
    assert isinstance(choices.CHOICE_LIMITS, choices.ChoiceLimits) and isinstance(chat.CHAT_LIMITS, chat.ChatLimits)
    assert not hasattr(choices, "LIMITS") and not hasattr(chat, "LIMITS")
    from captioner.cli import files
    from captioner.data.datasets import CAPTION_DATASETS
    from captioner.train import caption

    assert files.OUTPUT_FORMATS == ("text", "jsonl", "csv", "coco") and caption.TrainConfig.FORMATS == CAPTION_DATASETS
    assert not hasattr(files, "CAPTION_FORMATS") and not hasattr(caption, "CAPTION_FORMATS")
    assert io.shorten("x" * 100) == "x" * io.QUOTED_CHARS
