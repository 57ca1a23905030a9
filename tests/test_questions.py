"""Questions generated from captions (captioner.data.questions): each kind, the ambiguity rules, POPE negatives,
the train-only guard and the JSON lines file. All data is written here; nothing needs ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic import make_coco_folder, make_flickr8k

from captioner.data.captions import ImageCaptions
from captioner.data.questions import (
    KINDS,
    count_by_kind,
    generate_from_datasets,
    generate_questions,
    read_questions,
    sample_questions,
    write_questions,
)
from captioner.data.vqa import load_coco_questions


def asked(captions: list[str], seed: int = 0) -> dict[str, tuple[str, list[str]]]:
    """{question: (kind, answers)} for one image with these captions."""
    return {q.question: (q.kind, q.answers) for q in generate_questions([("img", "img.jpg", captions)], seed)}


def caption_questions(captions: list[str]) -> dict[str, tuple[str, list[str]]]:
    """The same, without the POPE questions."""
    return {q: v for q, v in asked(captions).items() if v[0] != "yes/no"}


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("a man riding a skateboard", {"what is the man riding?": ("object", ["skateboard"])}),
        (
            "two dogs play in the snow",
            {"how many dogs are there?": ("number", ["2"]), "where are the dogs playing?": ("location", ["snow"])},
        ),
        (
            "a red double decker bus parked on the street",
            {"what color is the bus?": ("color", ["red"]), "where is the bus parked?": ("location", ["street"])},
        ),
        ("a cat sitting on a bed", {"where is the cat sitting?": ("location", ["bed"])}),
        (
            "An orange and white cat sleeping under a table .",
            {
                "what color is the cat?": ("color", ["orange and white"]),
                "what is the cat sleeping under?": ("location", ["table"]),
            },
        ),
        (
            "A woman in a red coat is holding an umbrella .",
            {"what color is the coat?": ("color", ["red"]), "what is the woman holding?": ("object", ["umbrella"])},
        ),
        ("A guy rides a pony .", {"what is the man riding?": ("object", ["horse"])}),  # synonyms become one answer
        (
            "Three puppies are sitting next to a couch",
            {
                "how many dogs are there?": ("number", ["3"]),
                "what are the dogs sitting next to?": ("location", ["couch"]),
            },
        ),
    ],
)
def test_each_kind_from_one_caption(caption, expected):
    assert caption_questions([caption]) == expected


def test_yes_answers_name_the_categories_captions_mention():
    yes = {q: v for q, v in asked(["A man riding a skateboard down the street ."]).items() if v[1][0] == "yes"}
    assert yes == {
        "is there a person in the image?": ("yes/no", ["yes"]),
        "is there a skateboard in the image?": ("yes/no", ["yes"]),
    }


def test_agreeing_captions_give_one_answer_per_caption():
    questions = asked(["a black dog running on the beach", "A black dog runs on the beach .", "a puppy on the sand"])
    assert questions["what color is the dog?"] == ("color", ["black", "black"])
    assert questions["where is the dog running?"] == ("location", ["beach", "beach"])
    assert questions["where is the dog?"] == ("location", ["sand"])
    assert questions["is there a dog in the image?"] == ("yes/no", ["yes"] * 3)


@pytest.mark.parametrize(
    "captions, dropped",
    [
        (["a red bus on the street", "a blue bus parked on the road"], "what color is the bus?"),  # colours disagree
        (["a red bus on the street", "a white , red and blue bus drives by"], "what color is the bus?"),  # red or not?
        (["two dogs play in the snow", "three dogs run in the snow"], "how many dogs are there?"),  # counts disagree
        (["a black dog and a white dog on the grass"], "what color is the dog?"),  # which dog?
        (["a man riding a horse", "two men riding horses"], "what is the man riding?"),  # which man?
        (["a man riding a horse", "a man riding a bike"], "what is the man riding?"),  # captions disagree
        (["two people on a beach", "two men and a woman on a beach"], "how many people are there?"),  # 3 > 2
        (["a dog bites another dog"], "how many dogs are there?"),  # "a"/"another" are no count
        (["a black man holding an umbrella"], "what color is the man?"),  # skin is no colour
        (["a red , white and blue flag on a pole"], "what color is the flag?"),  # a list the rules cannot read
        (["a blue water bottle on a table"], "what color is the bottle?"),  # the water's colour, or the bottle's?
    ],
)
def test_ambiguous_questions_are_dropped(captions, dropped):
    assert dropped not in asked(captions)


def test_groups_and_couples_are_not_counts():
    for caption in [
        "a group of people walking on a street",
        "a couple of dogs playing in the grass",
        "a couple walking on the beach",
        "a pair of shoes on the floor",
    ]:
        assert [q for q, (kind, _) in asked([caption]).items() if kind == "number"] == [], caption
    assert asked(["a group of people walking on a street"])["where are the people walking?"] == ("location", ["street"])


def test_negated_and_unreal_objects_give_no_yes():
    for caption, category in [
        ("a toy car on a table", "car"),
        ("a man with no umbrella", "umbrella"),
        ("a painting of a horse on a wall", "horse"),
        ("a stuffed bear on a bed", "bear"),
    ]:
        assert f"is there a {category} in the image?" not in asked([caption]), caption
    assert asked(["a toy car on a table"])["is there a dining table in the image?"] == ("yes/no", ["yes"])


def test_pope_negatives_name_only_what_no_caption_could_mean():
    captions = [
        "A plate of hot dogs on a counter in a kitchen .",
        "Two hot dogs sitting on a plate next to a cup .",
        "Some animals walk by a parked van .",
    ]
    words = " ".join(captions).lower()
    forbidden = {
        "dog",
        "hot dog",
        "cup",
        "oven",
        "sink",
        "refrigerator",
        "microwave",
        "cat",
        "horse",
        "car",
        "truck",
        "fork",
        "dining table",
    }
    negatives = set()
    for seed in range(40):
        questions = asked(captions, seed)
        yes = [q for q, (kind, answers) in questions.items() if kind == "yes/no" and answers[0] == "yes"]
        no = [q for q, (kind, answers) in questions.items() if kind == "yes/no" and answers[0] == "no"]
        assert len(no) == len(yes) == 2  # hot dog, cup: balanced per image
        assert all(questions[q][1] == ["no"] * len(captions) for q in no)
        negatives |= {
            q.split(" ", 2)[2].removeprefix("an ").removeprefix("a ").removesuffix(" in the image?") for q in no
        }
    assert negatives and not negatives & forbidden
    assert not any(f" {category} " in f" {words} " for category in negatives)
    assert len(negatives) > 10  # drawn at random, not always the same few


def test_negatives_are_seeded_per_image():
    image = ImageCaptions(7, Path("seven.jpg"), ["a man riding a horse on the beach"])
    other = ImageCaptions(8, Path("eight.jpg"), ["a cat sitting on a bed"])
    alone = [q.question for q in generate_questions([image], seed=3)]
    assert alone == [q.question for q in generate_questions([other, image], seed=3) if q.image_id == 7]
    assert any(alone != [q.question for q in generate_questions([image], seed=s)] for s in range(4, 10))


def _flickr8k(root: Path, n_dev: int) -> tuple[Path, list[str]]:
    """A Flickr8k layout with captions the generator can read, and the names of its ``n_dev`` dev images."""
    make_flickr8k(root)
    names = (root / "Flickr_8k.trainImages.txt").read_text().split()
    dev = names[:n_dev]
    captions = [
        "A man riding a skateboard down the street .",
        "Two dogs play in the snow .",
        "A red bus parked on the street .",
        "A cat sitting on a bed .",
    ]
    (root / "Flickr8k.token.txt").write_text(
        "".join(f"{n}#{k}\t{captions[i % 4]}\n" for i, n in enumerate(names) for k in range(2))
    )
    (root / "Flickr_8k.trainImages.txt").write_text("\n".join(n for n in names if n not in dev) + "\n")
    (root / "Flickr_8k.devImages.txt").write_text("\n".join(dev) + "\n")
    return root, dev


def test_generate_from_datasets_uses_only_training_images(tmp_path):
    root, dev = _flickr8k(tmp_path / "flickr8k", n_dev=3)
    out = tmp_path / "out" / "qa_train.jsonl"
    questions = generate_from_datasets([f"flickr8k:{root}"], out, seed=0)
    assert {q.kind for q in questions} == set(KINDS)
    assert {q.path.name for q in questions} == {p.name for p in (root / "images").iterdir()} - set(dev)
    assert read_questions(out) == questions


def test_generate_from_datasets_refuses_a_dev_image_in_train(tmp_path):
    with pytest.raises(ValueError, match="also dev images"):  # the synthetic layout lists every image in both
        generate_from_datasets([f"flickr8k:{make_flickr8k(tmp_path / 'flickr8k')}"], tmp_path / "qa.jsonl")
    with pytest.raises(ValueError, match="also dev images"):  # same COCO ids, different folders
        generate_from_datasets([f"coco:{make_coco_folder(tmp_path / 'coco')}"], tmp_path / "qa.jsonl")
    assert not (tmp_path / "qa.jsonl").exists()


def test_a_coco_folder_without_dev_or_test_captions_gives_questions(tmp_path):
    root = make_coco_folder(tmp_path / "coco")  # like ../shared/data/coco, which has no captions_test.json
    (root / "annotations" / "captions_dev.json").unlink()
    questions = generate_from_datasets([f"coco:{root}"], tmp_path / "qa.jsonl")
    assert read_questions(tmp_path / "qa.jsonl") == questions  # was: "captions_test.json: cannot read it"


def test_jsonl_is_the_coco_questions_format(tmp_path):
    root = make_coco_folder(tmp_path / "coco")
    images = [
        (16500, root / "train" / "000000016500.jpg", ["a red bus parked on the street"]),
        (16501, root / "train" / "000000016501.jpg", ["A woman holding an umbrella .", "A woman with a hat ."]),
    ]
    questions = generate_questions(images)
    write_questions(questions, root / "qa_train.jsonl")
    rows = [json.loads(line) for line in (root / "qa_train.jsonl").read_text().splitlines()]
    assert len(rows) == len(questions) > 0
    assert all(r.keys() >= {"image_id", "question", "answers", "source", "kind", "file_name"} for r in rows)
    assert {r["source"] for r in rows} == {"generated"}
    assert rows[0]["file_name"] == str(root / "train" / "000000016500.jpg")
    assert read_questions(root / "qa_train.jsonl") == questions
    loaded = load_coco_questions(root, "train")  # today's loader reads them as they are
    assert [(e.image_id, e.question, e.answers, e.answer_type) for e in loaded] == [
        (q.image_id, q.question, q.answers, q.kind) for q in questions
    ]  # the kind is the question's type


def test_counts_and_samples():
    images = [
        (i, f"{i}.jpg", [c])
        for i, c in enumerate(
            [
                "a man riding a skateboard",
                "two dogs play in the snow",
                "a red bus on the street",
                "a cat sitting on a bed",
            ]
        )
    ]
    questions = generate_questions(images)
    counts = count_by_kind(questions)
    assert list(counts) == [*KINDS, "all"] and counts["all"] == len(questions)
    assert counts["object"] == 1 and counts["number"] == 1 and counts["color"] == 1 and counts["location"] == 3
    assert counts["yes/no"] == 2 * 6  # person, skateboard, dog, bus, cat and bed, each with a "no"
    assert sample_questions(questions, 5, seed=1) == sample_questions(questions, 5, seed=1)
    assert len(sample_questions(questions, 5)) == 5 and len(sample_questions(questions, 100)) == len(questions)
