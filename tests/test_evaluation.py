"""Evaluation: scores equal pycocoevalcap's scorers on the same inputs; tokenizer, CLI, edge cases, VQA."""

from __future__ import annotations

import csv
import json
import random
import shutil

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocotools.coco import COCO
from synthetic import make_flickr8k

from captioner.cli.main import main
from captioner.metrics.captions import corpus_scores, evaluate_captions
from captioner.metrics.ptb import ptb_tokenize, tokenize_captions
from captioner.metrics.vqa import (
    QUESTION_TYPES,
    exact_match,
    normalize_answer,
    question_type,
    vqa_report,
    vqa_soft_accuracy,
)

WORDS = "a an the dog dogs man woman child red blue green ball frisbee grass water runs jumps sits on in with".split()
HYPOTHESIS_SPREAD = {
    "perfect": lambda refs, rng: refs[0],
    "empty": lambda refs, rng: "",
    "repeated": lambda refs, rng: " ".join([rng.choice(WORDS)] * 6),
    "punctuation": lambda refs, rng: 'A dog , runs !!! ( fast ) ... in the "park" ; isn\'t it ?',
    "unicode": lambda refs, rng: "Un café naïve — über straße ☺ 😀 dog",
    "long": lambda refs, rng: " ".join(refs * 3),  # up to 195 words: past MAX_SCORED_WORDS (200) captions are cut
}


def _references(n_images: int, rng: random.Random) -> dict:
    def sentence() -> str:
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        return (" ".join(words).capitalize() + rng.choice([" .", ".", "", " !"])).strip()

    return {f"{1000 + i}_img.jpg": [sentence() for _ in range(5)] for i in range(n_images)}


def _toolkit(gts: dict, res: dict) -> dict:
    """pycocoevalcap's own scorers on already tokenized captions, as COCOEvalCap calls them."""
    out = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"Bleu_{n + 1}": b for n, b in enumerate(bleu)})
    out["ROUGE_L"], _ = Rouge().compute_score(gts, res)
    out["CIDEr"], _ = Cider().compute_score(gts, res)
    return out


@pytest.mark.parametrize("kind", list(HYPOTHESIS_SPREAD))
def test_scores_equal_pycocoevalcap(kind):
    rng = random.Random(kind)
    refs = _references(40, rng)
    results = {i: HYPOTHESIS_SPREAD[kind](r, rng) if n % 2 else r[1] for n, (i, r) in enumerate(refs.items())}
    ours = corpus_scores(results, refs, metrics=["Bleu", "ROUGE_L", "CIDEr"])
    expected = _toolkit(tokenize_captions(refs), tokenize_captions({i: [c] for i, c in results.items()}))
    assert ours.keys() == expected.keys()
    for name, value in expected.items():
        assert abs(ours[name] - value) <= 1e-9, name


def test_training_call_is_java_free(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    refs = _references(5, random.Random(0))
    scores = corpus_scores({i: r[0] for i, r in refs.items()}, refs, metrics=["Bleu", "CIDEr"])
    assert set(scores) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr"}
    assert scores["Bleu_4"] == pytest.approx(1.0)


def test_without_java_meteor_and_spice_are_skipped(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    refs = _references(3, random.Random(1))
    scores = evaluate_captions({i: r[0] for i, r in refs.items()}, refs)
    assert scores.tokenizer == "python"
    assert [s.split(":")[0] for s in scores.skipped] == ["METEOR", "SPICE"]
    assert "METEOR" not in scores.corpus and "CIDEr" in scores.corpus


# Expected tokens are what pycocoevalcap's PTBTokenizer (Java) printed for these captions.
@pytest.mark.parametrize(
    "caption, tokens",
    [
        ("A dog's ball isn't red.", "a dog 's ball is n't red"),
        ("They're here, we'll go; I'd say I've I'm", "they 're here we 'll go i 'd say i 've i 'm"),
        ("He cannot go. gonna wanna", "he can not go gon na wan na"),
        ("Mr. Smith went to the U.S. and St. John etc.", "mr. smith went to the u.s. and st. john etc."),
        (
            "A (red) [blue] {green} \"quoted\" 'single'",
            "a -lrb- red -rrb- -lsb- blue -rsb- -lcb- green -rcb- quoted single",
        ),
        ("and/or 1/2 3*4 a&b &amp; $5 £5 €5 50% #1 @home", "and/or 1/2 3 * 4 a & b & $ 5 # 5 $ 5 50 % # 1 @home"),
        ("t-shirt well-known 3-4 1,000 3.5 10:30 a--b a — b", "t-shirt well-known 3-4 1,000 3.5 10:30 a b a b"),
        ("wait... what?! no!!! hmm…", "wait what ?! no !!! hmm"),
        ("Café naïve ÉCOLE straße emoji 😀 ☺", "café naïve école straße emoji ☺"),
        ("can't won't O'Neil rock'n'roll '90s y'all", "ca n't wo n't o'neil rock 'n' roll '90s y' all"),
        ("3pm 10.30am 4x4 x'yz ab'c", "3pm 10.30 am 4x4 x yz ab c"),
        (":) <b>bold</b> ½ 1 1/2", ":-rrb- <b> bold </b> 1/2 1\xa01/2"),
        ("  tab\tsep  ", "tab sep"),
    ],
)
def test_python_tokenizer_matches_recorded_ptbtokenizer_output(caption, tokens):
    assert ptb_tokenize([caption]) == [tokens]


def test_line_context_is_kept():
    # PTBTokenizer reads all captions as one text: "s." before a line starting "The" is split.
    assert ptb_tokenize(["letter s.", "The cat", "letter s.", "the cat"]) == [
        "letter s",
        "the cat",
        "letter s.",
        "the cat",
    ]


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")
def test_python_tokenizer_equals_java_ptbtokenizer():
    rng = random.Random(3)
    refs = _references(30, rng)
    refs["tricky"] = [kind(r, rng) for kind in HYPOTHESIS_SPREAD.values() for r in list(refs.values())[:1]]
    assert tokenize_captions(refs, "python") == tokenize_captions(refs, "java")


# ---------------------------------------------------------------- CLI

FAST = ["--tokenizer", "python", "--metrics", "Bleu,ROUGE_L,CIDEr"]  # METEOR's JVM takes ~20 s to start


def test_cli_on_coco_files_loaded_through_pycocotools(tmp_path):
    rng = random.Random(5)
    refs = _references(12, rng)
    images = [{"id": 100 + i, "file_name": f"{100 + i:012d}.jpg"} for i in range(len(refs))]
    anns = [
        {"id": 10 * i + k, "image_id": 100 + i, "caption": c}
        for i, caps in enumerate(refs.values())
        for k, c in enumerate(caps)
    ]
    ann_file, res_file = tmp_path / "captions.json", tmp_path / "results.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "info": {}, "licenses": []}))
    res_file.write_text(
        json.dumps(
            [
                {"image_id": 100 + i, "caption": HYPOTHESIS_SPREAD["repeated"](c, rng)}
                for i, c in enumerate(refs.values())
            ]
        )
    )
    out = tmp_path / "scores.json"
    assert main(["eval", str(res_file), "--coco-annotations", str(ann_file), "--json", str(out), *FAST]) == 0
    coco = COCO(str(ann_file))
    coco_res = coco.loadRes(str(res_file))
    ids = coco.getImgIds()  # what COCOEvalCap evaluates, in its order
    gts = tokenize_captions({i: [a["caption"] for a in coco.imgToAnns[i]] for i in ids})
    res = tokenize_captions({i: [a["caption"] for a in coco_res.imgToAnns[i]] for i in ids})
    record = json.loads(out.read_text())
    for name, value in _toolkit(gts, res).items():
        assert abs(record[name] - value) <= 1e-9, name
    assert record["evaluated"]["images"] == 12 and record["evaluated"]["reference_captions"] == 60


def test_cli_flickr8k_json_lines_and_csv(tmp_path, capsys):
    root = make_flickr8k(tmp_path / "flickr8k", captions_per_image=3)
    names = (root / "Flickr_8k.devImages.txt").read_text().split()
    res_file = tmp_path / "results.jsonl"
    res_file.write_text(
        "".join(json.dumps({"file": n, "image_id": n, "caption": "a red circle"}) + "\n" for n in names)
    )
    out, per_image = tmp_path / "missing" / "dir" / "scores.json", tmp_path / "other" / "per_image.csv"
    assert (
        main(
            [
                "eval",
                str(res_file),
                "--flickr8k-tokens",
                str(root / "Flickr8k.token.txt"),
                "--split-list",
                str(root / "Flickr_8k.devImages.txt"),
                "--json",
                str(out),
                "--csv",
                str(per_image),
                *FAST,
            ]
        )
        == 0
    )
    assert [p.name for p in out.parent.iterdir()] == ["scores.json"]  # folders created, no temporary file left
    record = json.loads(out.read_text())
    assert {"Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"} <= record.keys()
    assert record["evaluated"]["images"] == 8 and record["evaluated"]["checkpoint"] is None
    rows = list(csv.DictReader(per_image.open()))
    assert len(rows) == 8 and "sentence_Bleu_4" in rows[0] and "Bleu_4" not in rows[0]
    mean_cider = sum(float(r["image_CIDEr"]) for r in rows) / len(rows)
    assert mean_cider == pytest.approx(record["CIDEr"], abs=1e-5)
    assert "CIDEr" in capsys.readouterr().out


@pytest.mark.parametrize(
    "records, code, message",
    [
        ([{"image_id": "nope.jpg", "caption": "a dog"}], 2, "have no reference captions"),
        ([{"image_id": "a.jpg", "caption": "x"}, {"image_id": "a.jpg", "caption": "y"}], 2, "more than one caption"),
        ([{"image_id": "a.jpg", "caption": "a dog"}], 0, "results cover 1 of 2"),
        ([{"image_id": "a.jpg", "caption": "a dog"}], 0, "CIDEr-D is meaningless on one image"),
    ],
)
def test_cli_coverage_messages(tmp_path, capsys, records, code, message):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("a.jpg#0\tA dog runs .\na.jpg#1\tA dog .\nb.jpg#0\tA cat .\n")
    res_file = tmp_path / "results.json"
    res_file.write_text(json.dumps(records))
    assert main(["eval", str(res_file), "--flickr8k-tokens", str(tokens), *FAST]) == code
    assert message in capsys.readouterr().err


def test_cli_rejects_results_and_weights_together(capsys):
    assert main(["eval", "r.json", "--weights", "w", "--flickr8k-tokens", "t"]) == 2
    assert "either RESULTS or --weights" in capsys.readouterr().err


# ---------------------------------------------------------------- VQA accuracy (official VQA v2 rules)


@pytest.mark.parametrize(
    "prediction, answer",
    [
        ("two", "2"),
        ("a dog", "dog"),
        ("yes.", "yes"),
        ("The Dog", "dog"),
        ("dont", "don't"),
        ("none", "0"),
        ("Yes!", "yes"),
        ("red, white", "red white"),
    ],
)
def test_normalization_makes_answers_equal(prediction, answer):
    assert normalize_answer(prediction) == normalize_answer(answer)
    assert exact_match(prediction, answer)


@pytest.mark.parametrize("humans_agreeing, accuracy", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_soft_accuracy_leave_one_out(humans_agreeing, accuracy):
    # Of 10 subsets of 9 humans: leaving out an agreeing human leaves k-1 matches, any other leaves k.
    humans = ["2"] * humans_agreeing + ["three"] * (10 - humans_agreeing)
    assert vqa_soft_accuracy("2", humans) == pytest.approx(accuracy)


@pytest.mark.parametrize(
    "prediction, humans, accuracy",
    [
        ("Yes", ["yes"] * 10, 0.0),
        ("yes.", ["yes"] * 10, 0.0),
        (" yes\n", ["yes"] * 10, 1.0),  # unanimous: as given
        ("two", ["2"] * 3, 0.0),
        ("Yes", ["yes"] * 9 + ["no"], 1.0),
        ("yes.", ["Yes"] * 4 + ["no"] * 6, 1.0),  # they disagree: normalized
    ],
)
def test_unanimous_answers_are_not_normalized_as_in_vqaeval(prediction, humans, accuracy):
    """vqaEval.py normalizes the prediction and the human answers only when the humans disagree."""
    assert vqa_soft_accuracy(prediction, humans) == pytest.approx(accuracy)


def test_vqa_report_per_type_and_exact():
    answers = {1: ["yes"] * 10, 2: ["2"] * 3 + ["3"] * 7, 3: ["red"] * 10}
    types = {1: "yes/no", 2: "number", 3: "other"}
    report = vqa_report({1: "yes", 2: "two", 3: "blue"}, answers, types)
    assert report["accuracy"] == pytest.approx((1.0 + 0.9 + 0.0) / 3)
    assert report["per_type"]["number"] == {"accuracy": pytest.approx(0.9), "questions": 1}
    mixed = vqa_report({1: "yes", 2: "Chair", 3: "sofa"}, {1: ["yes"] * 10, 2: ["chair"], 3: ["table", "desk"]})
    assert mixed["by_metric"] == {"exact": {"accuracy": 0.5, "questions": 2}, "vqa": {"accuracy": 1.0, "questions": 1}}
    exact = vqa_report({1: "chair", 2: "table"}, {1: ["chair"], 2: ["chair, table"]}, metric="exact")
    assert exact["accuracy"] == 0.5 and "per_type" not in exact
    with pytest.raises(ValueError, match="no reference answers"):
        vqa_report({9: "x"}, answers)


def test_image_batches_report_unreadable_images_and_go_on(tmp_path):
    from captioner.features import image_batches

    root = make_flickr8k(tmp_path / "flickr8k")
    (root / "images" / "broken.jpg").write_bytes(b"not an image")
    names = ["broken.jpg", *(root / "Flickr_8k.devImages.txt").read_text().split()[:3]]
    batches = list(image_batches(names, 2, 32, lambda n: root / "images" / n, progress=False))
    assert [len(good) + len(bad) for good, _, bad in batches] == [2, 2]
    assert [n for good, _, _ in batches for n in good] == names[1:]
    assert all(im.size[0] > 0 for _, images, _ in batches for im in images)
    ((item, reason),) = batches[0][2]
    assert item == "broken.jpg" and "broken.jpg" in reason and "\n" not in reason


@pytest.mark.parametrize(
    "question, kind",
    [
        ("Is there a dog in the image?", "yes/no"),
        ("does the man wear a hat", "yes/no"),
        ("Is the bus the same color as the car?", "yes/no"),  # an auxiliary first decides, colour or not
        ("How many dogs are there?", "number"),
        ("how many", "number"),
        ("What color is the bus?", "color"),
        ("What colour are the flowers?", "color"),
        ("the bus's colors?", "color"),
        ("What is the man riding?", "other"),
        ("Where is the cat?", "other"),
        ("how much is it", "other"),
        ("", "other"),
        ("?!", "other"),
        ("Island or city?", "other"),  # "island" is no auxiliary
    ],
)
def test_question_types_follow_the_documented_rule(question, kind):
    assert question_type(question) == kind and kind in QUESTION_TYPES


def test_a_large_scoring_shows_its_stages_and_a_small_one_does_not(monkeypatch, capsys):
    import captioner.metrics.captions as captions

    results = {1: "a dog runs", 2: "a cat sits"}
    references = {1: ["a dog is running", "the dog runs"], 2: ["a cat is sitting", "the cat sits down"]}
    evaluate_captions(results, references, ["Bleu", "CIDEr"], "python")
    assert "scoring" not in capsys.readouterr().err
    monkeypatch.setattr(captions, "SHOW_STAGES", 2)  # as if 2 captions took minutes
    evaluate_captions(results, references, ["Bleu", "CIDEr"], "python")
    err = capsys.readouterr().err
    assert "scoring 2 captions" in err and "tokenizing" in err and "CIDEr" in err and "3/3" in err
