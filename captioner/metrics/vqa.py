"""VQA accuracy as the official VQA v2 evaluation (vqaEval.py) computes it, and exact match.

The soft accuracy (:func:`vqa_soft_accuracy`), for a question with three or more human answers, follows
vqaEval.py line for line: when the humans disagree, the prediction and their answers are normalized
(punctuation, number words, articles, contractions); when they all gave the same answer, nothing is (only
tabs, newlines and outer spaces go), so "Yes" earns nothing against ten "yes". A prediction then earns
min(#humans who gave it / 3, 1), averaged over the leave-one-out subsets of the human answers.

Questions with one or two answers (DAQUAR, COCO-QA, POPE, your own data) are the project's own rule, not
vqaEval.py's (which would give them 0 or 1/3): exact match, after normalization, against any of them
(:func:`question_metric`). :func:`vqa_report` counts these rows apart (``by_metric``), so that a report can say
how much of its accuracy is exact match.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

from ..lexicon import AUXILIARIES
from ..vocab import tokenize_words

_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: the official pattern, typo and all
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _strip_answer_punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if p + " " in text or " " + p in text or _COMMA_STRIP.search(text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, re.UNICODE)  # sic: the official code passes re.UNICODE as the count


def normalize_answer(answer: str) -> str:
    """An answer as the official VQA evaluation compares it: punctuation, number words, articles, contractions."""
    text = _strip_answer_punctuation(answer.replace("\n", " ").replace("\t", " ").strip())
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def answer_index(answers: Sequence[str]) -> dict[str, int]:
    """Class of each answer in normalised form: how the answer vocabulary is looked up, in training and in
    multiple choice alike (:func:`captioner.train_vqa.build_answer_vocab`)."""
    return {normalize_answer(a): i for i, a in enumerate(answers)}


def _plain(answer: str) -> str:
    """What vqaEval.py does to every answer: tabs and newlines to spaces, outer spaces stripped."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


def vqa_soft_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Official VQA accuracy of one prediction: min(matches / 3, 1) averaged over leave-one-out subsets, with
    answers normalized only when the humans disagree, as vqaEval.py does."""
    if not human_answers:
        raise ValueError("no human answers")
    pred, gts = _plain(prediction), [_plain(a) for a in human_answers]
    if len(set(gts)) > 1:
        pred, gts = normalize_answer(pred), [normalize_answer(a) for a in gts]
    return sum(min(1.0, sum(g == pred for j, g in enumerate(gts) if j != i) / 3) for i in range(len(gts))) / len(gts)


def exact_match(prediction: str, answer: str) -> bool:
    """Plain accuracy for single-reference sets such as DAQUAR, after the same normalization."""
    return normalize_answer(prediction) == normalize_answer(answer)


def question_metric(answers: Sequence[str]) -> str:
    """How one question is scored: the soft VQA accuracy needs several humans (three or more answers);
    with fewer, a prediction is right when it matches one of them."""
    return "vqa" if len(answers) >= 3 else "exact"


def question_score(prediction: str, answers: Sequence[str], metric: str = "auto") -> float:
    """The score of one prediction: ``metric`` "vqa" (soft accuracy), "exact", or "auto" (:func:`question_metric`)."""
    if metric == "auto":
        metric = question_metric(answers)
    return vqa_soft_accuracy(prediction, answers) if metric == "vqa" else float(any(exact_match(prediction, a)
                                                                                   for a in answers))


QUESTION_TYPES = ("yes/no", "number", "color", "other")


def question_type(question: str) -> str:
    """A question's type from its words, one of :data:`QUESTION_TYPES`: "yes/no" when it opens with an auxiliary
    verb ("is there a dog?", "does the man ..."), "number" when it opens with "how many", "color" when it names
    colour ("what color is the bus?"), else "other". Read from the question alone, so that every dataset can be
    broken down alike (VQA v2's own answer types come from the answers, which other sets lack)."""
    words = tokenize_words(question)
    if words[:1] and words[0] in AUXILIARIES:
        return "yes/no"
    if words[:2] == ["how", "many"]:
        return "number"
    return "color" if {"color", "colour", "colors", "colours"} & set(words) else "other"


def vqa_report(predictions: Mapping, answers: Mapping, answer_types: Mapping | None = None,
               metric: str = "auto") -> dict:
    """Accuracy (0-1) of ``predictions`` ({qid: answer}) against ``answers`` ({qid: [answers]}), overall and
    per answer type. ``metric`` "vqa" is the official soft accuracy; "exact" counts a prediction right
    when it matches any listed answer; "auto" picks one of the two per question (:func:`question_metric`), and
    ``by_metric`` gives the accuracy and count of each kind of row ("vqa", "exact": fewer than 3 answers)."""
    if metric not in ("vqa", "exact", "auto"):
        raise ValueError(f"unknown metric {metric!r} (choose vqa, exact or auto)")
    orphans = [q for q in predictions if q not in answers]
    if orphans:
        raise ValueError(f"{len(orphans)} prediction(s) have no reference answers (first: {orphans[0]!r})")
    if not predictions:
        raise ValueError("no predictions to evaluate")
    score = {q: question_score(p, answers[q], metric) for q, p in predictions.items()}
    report = {"metric": metric, "accuracy": float(np.mean(list(score.values()))), "questions": len(score)}
    if metric == "auto":  # which rows the soft accuracy scored, and which exact match
        by_metric: dict = {}
        for q, s in score.items():
            by_metric.setdefault(question_metric(answers[q]), []).append(s)
        report["by_metric"] = {m: {"accuracy": float(np.mean(v)), "questions": len(v)}
                               for m, v in sorted(by_metric.items())}
    if answer_types:
        groups: dict = {}
        for q, s in score.items():
            groups.setdefault(answer_types.get(q, "unknown"), []).append(s)
        report["per_type"] = {t: {"accuracy": float(np.mean(v)), "questions": len(v)}
                              for t, v in sorted(groups.items())}
    return report
