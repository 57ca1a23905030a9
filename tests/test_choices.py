"""Multiple choice: the choices string, its checks, probabilities over the candidates, and out-of-vocabulary
candidates scored by the caption model (tiny models trained here on generated shapes)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from synthetic import COLORS, SHAPES, draw, make_flickr8k

from captioner import Captioner
from captioner.choices import (
    CHOICE_LIMITS,
    SHIPPED,
    AnswerWords,
    ChoiceWeights,
    check_choices,
    choice_features,
    choice_probabilities,
    parse_choices,
)
from captioner.cli.main import main
from captioner.concepts import ConceptVocab, SeenConcepts
from captioner.train.fit_choices import fit_choice_weights
from captioner.vocab import Vocabulary

TINY = [
    "--embed-dim",
    "16",
    "--hidden-dim",
    "32",
    "--dropout",
    "0",
    "--lr",
    "0.005",
    "--batch-size",
    "4",
    "--threads",
    "1",
]


# ---------------------------------------------------------------- the choices string


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tennis|baseball|golf|soccer", ["tennis", "baseball", "golf", "soccer"]),
        (" red | a blue car ", ["red", "a blue car"]),  # candidates are stripped
        (r"a\|b|c", ["a|b", "c"]),  # an escaped separator inside a choice
        (r"back\\|slash", ["back\\", "slash"]),  # an escaped backslash, then a separator
        (r"c:\temp|d", [r"c:\temp", "d"]),  # a backslash before anything else stays
    ],
)
def test_the_separator_and_its_escape(text, expected):
    assert parse_choices(text) == expected


@pytest.mark.parametrize(
    "choices, message",
    [
        ("tennis||golf", "choice 2 of 3 is blank"),
        ("tennis|golf|", "choice 3 of 3 is blank"),
        ("tennis| ?! |golf", "choice 2 of 3 has no words (letters or digits) the models can read"),
        ("tennis|\U0001f3be|golf", "choice 2 of 3 has no words"),  # an emoji
        ("tennis|table\ttennis|golf", "choice 2 of 3 holds a tab or a line break"),  # text output is one line a record
        ("tennis|table\ntennis", "choice 2 of 2 holds a tab or a line break"),
        ("tennis", "give at least 2 choices, separated by |"),
        ("tennis|Tennis", "choices 1 and 2 are the same answer ('Tennis')"),
        ("two|2|three", "choices 1 and 2 are the same answer ('2')"),  # compared as VQA compares answers
        ("|".join(f"answer {i}" for i in range(101)), "give at most 100 choices, not 101"),
        ("yes|" + "x" * 201, "choice 2 is too long (201 characters; at most 200)"),
        ("a|" * 30_000, "the choices are too long (60000 characters"),  # refused before it is split
    ],
)
def test_bad_choices_get_one_line_errors(choices, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as error:
        parse_choices(choices)
    assert "\n" not in str(error.value)


def test_a_list_of_choices_is_checked_as_a_string_is():
    assert check_choices(["red", "blue"]) == ["red", "blue"]
    assert CHOICE_LIMITS.max_choices == 100
    for bad in ("red|blue", ["red", 3], [["red"]]):
        with pytest.raises(ValueError, match="^choices must be a list of strings"):
            check_choices(bad)
    with pytest.raises(ValueError, match="at least 2"):
        check_choices(["red"])


# ---------------------------------------------------------------- scoring


def test_probabilities_sum_to_one_over_the_choices_in_and_out_of_vocabulary():
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "red", "circle", "square"])
    index = AnswerWords({"red": 0, "blue": 1, "yes": 2})
    vqa_log_probs = torch.log_softmax(torch.tensor([2.0, 0.5, -1.0]), dim=0)
    words = torch.log_softmax(torch.tensor([-9.0, -9.0, -1.0, 0.0, 1.0, 3.0, -2.0]), dim=0)
    choices = ["blue", "a circle", "square", "zebra", "red"]
    ranked = choice_probabilities(choices, vqa_log_probs, index, words, vocab)
    assert sorted(c for c, _ in ranked) == sorted(choices)
    assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-6)
    assert all(p > 0 for _, p in ranked)  # out of vocabulary is never 0
    assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
    p = dict(ranked)
    assert p["circle" if "circle" in p else "a circle"] > p["square"]  # the word the image supports
    # "zebra" is unknown to the caption vocabulary too: charged for sharing <unk>'s mass
    assert choice_features("zebra", vqa_log_probs, index, words, vocab)[3] == 1.0
    assert choice_features("a circle", vqa_log_probs, index, words, vocab) == (0.0, 1.0, float(words[5]), 0.0, 0.0, 0.0)


def test_fitting_recovers_weights_that_rank_the_right_candidate_first():
    torch.manual_seed(0)
    items = []
    for _ in range(200):  # in-vocabulary candidates, the right one likelier under the VQA model
        x = torch.zeros(4, 4)
        x[:, 0] = torch.log_softmax(torch.randn(4) + torch.tensor([2.0, 0, 0, 0]), dim=0)
        items.append(x)
    weights = fit_choice_weights(items)
    assert weights.vqa_weight > 0.5 and weights != SHIPPED


def test_a_candidate_reads_the_likeliest_answer_it_holds_plurals_folded():
    answers = AnswerWords({"tennis": 0, "playing tennis": 1, "goat": 2, "2": 3, "glasses": 4, "glass": 5})
    assert sorted(answers.held_by("Playing tennis")) == [0, 1] and answers.held_by("tennis") == [0]
    assert answers.held_by("goats") == [2] and answers.held_by("two goats") == [2, 3]  # "two" is "2"
    assert sorted(answers.held_by("glasses")) == [4, 5]  # both forms are answers: each holds the other
    assert answers.held_by("golf") == [] and answers.held_by("a") == []
    log_probs = torch.log(torch.tensor([0.7, 0.01, 0.2, 0.05, 0.02, 0.02]))
    words, vocab = torch.zeros(4), Vocabulary(["<pad>", "<start>", "<end>", "<unk>"])
    playing = choice_features("playing tennis", log_probs, answers, words, vocab)
    assert playing == choice_features("tennis", log_probs, answers, words, vocab)  # "tennis" is the likelier
    assert choice_features("goats", log_probs, answers, words, vocab)[0] == pytest.approx(float(log_probs[2]))


def test_concepts_score_every_wording_of_a_candidate_alike():
    vocab = ConceptVocab(
        ["tennis", "baseball", "playing", "goat", "sheep"],
        {
            "tennis": ["tennis"],
            "baseball": ["baseball"],
            "playing": ["playing"],
            "goat": ["goat"],
            "goats": ["goat"],
            "sheep": ["sheep"],
        },
    )
    seen = SeenConcepts(torch.tensor([0.9, 0.05, 0.6, 0.8, 0.1]), vocab)
    c, n = seen.features("goats")
    assert c == pytest.approx(torch.tensor(0.8).log().item()) and n == 0.0  # the plural is the concept
    assert seen.features("a zebra") == (0.0, 1.0)  # names no concept
    words = torch.zeros(4)  # the caption model has no opinion: only the concepts decide
    rule = ChoiceWeights(vqa_weight=1.0, oov_bias=0.0, word_weight=0.0, unknown_weight=0.0, concept_weight=1.0)
    plain = Vocabulary(["<pad>", "<start>", "<end>", "<unk>"])
    index = AnswerWords({"baseball": 0, "tennis": 1})
    vqa = torch.log(torch.tensor([0.5, 0.5]))
    for choices in (["tennis", "baseball"], ["playing tennis", "playing baseball"], ["goats", "sheep"]):
        ranked = choice_probabilities(choices, vqa, index, words, plain, rule, seen.features)
        assert ranked[0][0] == choices[0]
    without = choice_probabilities(["playing tennis", "playing baseball"], vqa, index, words, plain, rule)
    assert without[0][1] == pytest.approx(0.5)  # no detectors: the concept inputs are 0 for every candidate


# ---------------------------------------------------------------- tiny models: captions and colour answers


@pytest.fixture(scope="module")
def shapes_weights(tmp_path_factory) -> Path:
    """caption/ (shape captions) and vqa/ (colour questions only: no shape is an answer it knows), one encoder."""
    root = tmp_path_factory.mktemp("choices")
    data = make_flickr8k(root / "flickr8k")
    assert (
        main(
            [
                "train",
                "--data",
                f"flickr8k:{data}",
                "--out",
                str(root / "cap"),
                "--epochs",
                "40",
                "--min-count",
                "1",
                "--image-dim",
                "32",
                "--cache-dir",
                str(root / "cache"),
                *TINY,
            ]
        )
        == 0
    )
    daquar = root / "daquar"
    (daquar / "images").mkdir(parents=True)
    rows = [("question", "answer", "image_id")]
    for i, (color, shape) in enumerate((c, s) for c in COLORS for s in SHAPES):
        draw(color, shape).save(daquar / "images" / f"image{i + 1}.jpg")
        rows.append(("what color is the shape", color, f"image{i + 1}"))
    with open(daquar / "qa_train.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    assert (
        main(
            [
                "train-vqa",
                "--data",
                f"daquar:{daquar}",
                "--out",
                str(root / "vqa"),
                "--val-fraction",
                "0",
                "--epochs",
                "60",
                "--fused-dim",
                "32",
                "--mlp-dim",
                "32",
                "--cache-dir",
                str(root / "cache"),
                *TINY,
            ]
        )
        == 0
    )
    (root / "weights").mkdir()
    (root / "cap" / "best").rename(root / "weights" / "caption")
    (root / "vqa" / "best").rename(root / "weights" / "vqa")
    return root / "weights"


def test_an_out_of_vocabulary_candidate_the_image_supports_ranks_above_an_in_vocabulary_one(shapes_weights, tmp_path):
    model = Captioner.from_pretrained(shapes_weights, precision="fp32")
    assert "circle" not in model.vqa.answer_index and "blue" in model.vqa.answer_index
    for shape in SHAPES:
        draw("red", shape).save(tmp_path / f"{shape}.png")
        ranked = model.ask(
            tmp_path / f"{shape}.png", "what shape is in the picture", choices=["circle", "square", "blue"]
        )
        assert ranked[0][0] == shape  # out of the answer vocabulary, above "blue", which is in it
        assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-6)
    assert model.ask(tmp_path / "circle.png", "what color is the shape", choices="red|blue|circle")[0][0] == "red"


def test_ask_choices_on_the_command_line_and_in_a_batch_column(shapes_weights, tmp_path, capsys):
    draw("red", "square").save(tmp_path / "square.png")
    code = main(
        [
            "ask",
            str(tmp_path / "square.png"),
            "what is the shape",
            "--choices",
            "circle|square|blue",
            "--weights",
            str(shapes_weights),
            "-q",
        ]
    )
    out, err = capsys.readouterr()
    lines = [line.split("\t") for line in out.splitlines()]
    assert (
        code == 0
        and err == ""
        and lines[0][0] == "square"
        and sorted(c for c, _ in lines) == ["blue", "circle", "square"]
    )
    assert sum(float(p) for _, p in lines) == pytest.approx(1.0, abs=2e-4)
    assert (
        main(
            ["ask", str(tmp_path / "square.png"), "what shape", "--choices", "circle", "--weights", str(shapes_weights)]
        )
        == 2
    )
    assert capsys.readouterr().err == (
        "captioner: error: give at least 2 choices, separated by | (write \\| for a | inside one), not 1\n"
    )
    qa = tmp_path / "qa.csv"
    qa.write_text(
        "image_id,question,choices\nsquare,what shape is in the picture,circle|square\n"
        "square,what color is the shape,\nsquare,what shape,red|red\n"
    )
    code = main(
        [
            "ask",
            "--batch",
            str(qa),
            "--images",
            str(tmp_path),
            "-o",
            str(tmp_path / "out.csv"),
            "--weights",
            str(shapes_weights),
            "-q",
        ]
    )
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert code == 1 and [r["predicted_answer"] for r in rows] == ["square", "red", ""]
    assert rows[0]["choices"] == "circle|square" and float(rows[0]["probability"]) > 0.5
    assert "captioner: row 3: choices 1 and 2 are the same answer ('red'); give each once\n" in capsys.readouterr().err


def test_choices_without_caption_weights_are_a_one_line_error(shapes_weights, tmp_path, capsys):
    draw("red", "square").save(tmp_path / "square.png")
    code = main(
        [
            "ask",
            str(tmp_path / "square.png"),
            "what shape",
            "--choices",
            "circle|square",
            "--weights",
            str(shapes_weights / "vqa"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("captioner: error: ") and err.count("\n") == 1
