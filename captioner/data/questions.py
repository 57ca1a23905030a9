"""Question-answer pairs generated from training captions by rules, after COCO-QA (Ren, Kiros & Zemel 2015).

Human captions name objects, colours, counts and places ("two dogs play in the snow"), so every training
caption can be turned into VQA questions whose answer it states. No parser, model or download: a caption is
lowercased and split into words, and a lexicon finds its nouns; the words around a noun say the rest.

A *noun phrase* is [determiners or a number] [modifiers] NOUN, where NOUN is a lexicon noun (one to three
words: "fire hydrant") that ends the phrase: the next word is a function word, punctuation, a verb or the end.
A lexicon noun followed by another noun ("a bus stop", "a dog collar") modifies it and is no phrase's head.
Lexicon nouns map to one answer word ("puppy" -> "dog", "lady" -> "woman") and, for the 80 COCO categories,
to a category ("man" -> "person"). "a group of", "a couple of" and "a slice of" are read as determiners.

Question kinds. The subject is the phrase that opens the caption (after "there is", "a photo of", ...); what
describes it is skipped to find its verb ("a girl [in a white shirt] jumps"), but not "with"/"and" a person or an
animal ("a man with a dog walking": who walks?). Questions name nouns by their answer word ("the man" for "a guy").

- object: SUBJECT [is|are] VERB the NOUN -> "what is the man riding?" -> "skateboard";
- location: SUBJECT [is|are] [VERB] on|in|at|through|... PLACE -> "where is the cat sitting?" -> "bed", with
  PLACE a place noun ("bed", "beach", "street"); or SUBJECT [VERB] near|under|next to|in front of|... NOUN ->
  "what is the cat sitting under?" -> "table";
- number: a number word 2-10 before a plural noun -> "how many dogs are there?" -> "2" (as digits);
- color: colour words before a noun -> "what color is the bus?" -> "red" ("black and white": sorted, joined);
- yes/no, as POPE: "is there a dog in the image?" -> "yes" for each COCO category some caption names, and as
  many "no" questions for random categories that no caption names (seeded, so the same every run).

Every question must be answerable from its caption alone, so these are dropped:

1. questions about a noun that is negated or not real ("no dog", "a toy car", "a painting of a horse");
2. questions about a noun that one caption names twice ("a dog chases another dog": which dog?);
3. "the X" questions when any caption of the image has several X ("two men ...": which man?);
4. colour questions when the image's captions give the noun more than one colouring ("a red bus" and "a
   blue bus"), or a list the rules cannot read ("a red, white and blue flag"), and any about people
   ("a black man" names no colour);
5. count questions when the captions give different counts, or when one caption names more of them
   ("two people" but "two men and a woman"); "a"/"one" are not counts ("one dog bites another");
6. questions whose captions disagree ("the man is riding a horse" / "... a bike"). A question kept is
   written once per image, with its answer once per caption that supports it, so the soft VQA score sees
   agreement;
7. POPE "no" never names a category any caption word could mean: its own words anywhere ("hot dog" blocks
   dog), general words ("animal" blocks every animal) and scenes ("kitchen" blocks oven, sink, ...).

Only training images may be used: :func:`generate_from_datasets` loads the ``train`` split and refuses to run
when an image of it is also in the dataset's ``dev`` or ``test`` split. :func:`write_questions` writes JSON lines
in the COCO-questions format of ``captioner.data.vqa.load_coco_questions``, plus ``kind``, ``file_name`` (the
image's path) and ``caption``; ``source`` is ``"generated"``.

    captioner questions --data flickr8k:ROOT --data coco:ROOT --out data/generated
    captioner train-vqa --data daquar:ROOT --data coco:ROOT --data generated:data/generated:0.5

writes ``data/generated/qa_train.jsonl``, which ``--data generated:FOLDER[:WEIGHT]`` mixes into VQA training
(trained on, never validated: see ``captioner.data.datasets.TRAIN_ONLY``).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..io import atomic_path, parse_json, read_text
from ..settings import check, setting
from ..vocab import tokenize_words
from .captions import ImageCaptions
from .datasets import DatasetSpec, load_caption_dataset
from .question_rules import MARKS, PLURAL_ONLY, Lexicon, Mention, Noun, caption_questions

KINDS = ("object", "number", "color", "location", "yes/no")
QUESTIONS_FILE = "qa_train.jsonl"  # what ``captioner questions`` writes into its --out folder


# ---------------------------------------------------------------- one image, all its captions


@dataclass
class GeneratedQuestion:
    """A question about one image, its answers (one per caption that gives it) and the caption it came from
    (None for a POPE "no", which comes from every caption's silence)."""

    image_id: int | str
    path: Path
    question: str
    answers: list[str]
    kind: str
    caption: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "question": self.question,
            "answers": self.answers,
            "source": "generated",
            "kind": self.kind,
            "file_name": os.path.abspath(self.path),  # absolute: read from anywhere
            "caption": self.caption,
        }


def _count_ok(noun: Noun, count: int, mentions: list[list[Mention]]) -> bool:
    """Whether no caption names more of ``noun`` (or, for a category's own word, of its category) than ``count``."""
    for caption in mentions:
        same = [
            m
            for m in caption
            if m.noun.answer == noun.answer or (noun.answer == noun.category and m.noun.category == noun.category)
        ]
        if sum(m.count or (2 if m.plural else 1) for m in same) > count:
            return False
    return True


def _existence(
    image: tuple, mentions: list[list[Mention]], tokens: list[list[str]], lex: Lexicon, rng: random.Random
) -> list[GeneratedQuestion]:
    """POPE questions: "yes" for each category a caption names, as many "no" for categories none could mean."""
    image_id, path, captions = image
    seen: dict[str, list[str]] = {}
    for caption, found in zip(captions, mentions):
        for category in dict.fromkeys(m.noun.category for m in found if m.noun.category and not m.blocked):
            seen.setdefault(category, []).append(caption)
    blocked = set(seen).union(*(lex.blocks.get(t, ()) for words in tokens for t in words))
    pool = [c for c in lex.categories if c not in blocked]
    unseen = rng.sample(pool, min(len(seen), len(pool)))
    return [
        GeneratedQuestion(image_id, path, _is_there(c), ["yes"] * len(caps), "yes/no", caps[0])
        for c, caps in seen.items()
    ] + [GeneratedQuestion(image_id, path, _is_there(c), ["no"] * len(captions), "yes/no", None) for c in unseen]


def _is_there(category: str) -> str:
    """POPE's question, in COCO's category names: "is there a dining table in the image?"."""
    if category in PLURAL_ONLY:
        return f"are there {category} in the image?"
    article = "" if category == "broccoli" else "an " if category[0] in "aeiou" else "a "
    return f"is there {article}{category} in the image?"


def image_questions(image: tuple, lex: Lexicon, rng: random.Random) -> list[GeneratedQuestion]:
    """Every question an image's captions agree on (rules 2-6 of the module docstring), then the POPE ones."""
    image_id, path, captions = image
    tokens = [tokenize_words(c, MARKS) for c in captions]
    parsed = [caption_questions(c, lex) for c in captions]
    mentions = [m for m, _ in parsed]
    colors, counts, several = defaultdict(set), defaultdict(set), set()
    for found in mentions:
        names = Counter(m.noun.answer for m in found)
        several |= {n for n, k in names.items() if k > 1} | {m.noun.answer for m in found if m.plural}
        for m in found:
            colors[m.noun.answer] |= {m.colors} - {None}
            counts[m.noun.answer] |= {m.count} - {None}
    merged: dict[str, tuple[str, list[str], list[str]]] = {}
    for caption, found, (_, candidates) in zip(captions, mentions, parsed):
        twice = {n for n, k in Counter(m.noun.answer for m in found).items() if k > 1}
        for c in candidates:
            noun = next(m.noun for m in found if m.noun.answer == c.about)
            if c.about in twice or (c.singular and c.about in several):
                continue
            if c.kind == "color" and len(colors[c.about]) > 1:
                continue
            if c.kind == "number" and (len(counts[c.about]) > 1 or not _count_ok(noun, int(c.answer), mentions)):
                continue
            kind, answers, sources = merged.setdefault(c.question, (c.kind, [], []))
            answers.append(c.answer)
            sources.append(caption)
    kept = [
        GeneratedQuestion(image_id, path, q, answers, kind, sources[0])
        for q, (kind, answers, sources) in merged.items()
        if len(set(answers)) == 1
    ]
    return kept + _existence(image, mentions, tokens, lex, rng)


def _triple(item: Any) -> tuple[int | str, Path, list[str]]:
    """An ``ImageCaptions`` or an ``(image_id, path, captions)`` tuple, as the tuple."""
    if hasattr(item, "captions"):
        return item.image_id, Path(item.path), list(item.captions)
    image_id, path, captions = item
    return image_id, Path(path), list(captions)


def generate_questions(images: Iterable[Any], seed: int = 0) -> list[GeneratedQuestion]:
    """Questions from every caption of ``images`` (``ImageCaptions`` or ``(image_id, path, captions)``), which
    must all be training images. Each image's POPE negatives come from its own RNG, seeded by ``seed`` and its
    id, so an image gets the same questions whatever else is in the list."""
    lex = Lexicon.build()
    out = []
    for item in images:
        image = _triple(item)
        out += image_questions(image, lex, random.Random(f"{seed}/{image[0]}"))
    return out


# ---------------------------------------------------------------- files, datasets and reports


def write_questions(questions: Iterable[GeneratedQuestion], path: str | Path) -> None:
    """Write questions as JSON lines in the COCO-questions format (plus ``kind``, ``file_name``, ``caption``),
    atomically: ``path`` holds the old file or the whole new one."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(q.to_json()) + "\n" for q in questions)


def read_questions(path: str | Path) -> list[GeneratedQuestion]:
    """Questions written by :func:`write_questions`."""
    rows = [parse_json(line) for line in read_text(path).splitlines() if line.strip()]
    return [
        GeneratedQuestion(r["image_id"], Path(r["file_name"]), r["question"], r["answers"], r["kind"], r["caption"])
        for r in rows
    ]


def training_images(dataset: str) -> list[ImageCaptions]:
    """The ``train`` split of a ``flickr8k:ROOT`` or ``coco:ROOT`` dataset. ValueError if any of its images is
    also in the dataset's ``dev`` or ``test`` split (by path or image id), which would let dev and test questions
    come from captions the model trained on."""
    spec = DatasetSpec.parse(dataset)
    if spec.name not in ("flickr8k", "coco") or spec.root is None:
        raise ValueError(f"dataset {dataset!r}: expected flickr8k:ROOT or coco:ROOT")
    train = load_caption_dataset(spec.name, spec.root, "train")
    for split in ("dev", "test"):
        try:
            held_out = load_caption_dataset(spec.name, spec.root, split)
        except FileNotFoundError:  # the dataset has no such split
            continue
        keys = {Path(h.path).resolve() for h in held_out} | {h.image_id for h in held_out}
        leaked = [t.path for t in train if Path(t.path).resolve() in keys or t.image_id in keys]
        if leaked:
            raise ValueError(f"{spec.name}: {len(leaked)} train image(s) are also {split} images (first: {leaked[0]})")
    return train


def generate_from_datasets(data: Sequence[str], out_file: str | Path, seed: int = 0) -> list[GeneratedQuestion]:
    """Questions from the training images (:func:`training_images`) of each ``NAME:ROOT`` dataset, written to
    ``out_file`` (nothing is written when a dataset is refused)."""
    images = [image for dataset in data for image in training_images(dataset)]
    questions = generate_questions(images, seed)
    write_questions(questions, out_file)
    return questions


def count_by_kind(questions: Iterable[GeneratedQuestion]) -> dict[str, int]:
    """How many questions of each kind, in the order of ``KINDS``, and the total as ``"all"``."""
    counts = Counter(q.kind for q in questions)
    return {k: counts[k] for k in KINDS} | {"all": sum(counts.values())}


def sample_questions(questions: Sequence[GeneratedQuestion], n: int = 20, seed: int = 0) -> list[GeneratedQuestion]:
    """``n`` questions drawn at random (seeded), for a report or an eye check."""
    return random.Random(seed).sample(list(questions), min(n, len(questions)))


def describe(q: GeneratedQuestion) -> str:
    """One line: question -> answers (caption)."""
    return f"{q.question} -> {', '.join(q.answers)}   ({q.caption or 'no caption names it'})"


@dataclass
class QuestionsConfig:
    """The settings of ``captioner questions``."""

    data: tuple[str, ...] = setting(
        (),
        "a caption dataset whose training captions are read, as flickr8k:FOLDER or coco:FOLDER; required",
        metavar="FORMAT:FOLDER",
    )
    out: str | None = setting(None, f"the folder to write {QUESTIONS_FILE} into; required", metavar="FOLDER")
    seed: int = setting(0, 'random seed of the POPE "no" questions and of the questions shown', low=0, high=2**32 - 1)
    show: int = setting(20, "how many random questions to print", low=0, high=10**6)

    def __post_init__(self) -> None:
        check(self)
        if not self.data:
            raise ValueError("give the training captions with --data FORMAT:FOLDER (formats: flickr8k, coco)")
        if not self.out:
            raise ValueError(f"give the folder to write {QUESTIONS_FILE} into with --out FOLDER")
