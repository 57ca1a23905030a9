"""The rules that read one caption for the question generator (:mod:`captioner.data.questions`, whose docstring
states them): its lexicon (nouns and the answer and COCO category each means, places, verbs, the words that block
a POPE "no") and the reading itself: a caption's noun phrases (:func:`find_mentions`) and the questions it
answers on its own (:func:`caption_questions`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from ..lexicon import COLORS, INVARIANT, PLURAL_ONLY, plural
from ..vocab import tokenize_words
from .question_words import (
    ADJ_ED,
    ANIMATE,
    BLOCKERS,
    COMPOUND_ED,
    DETERMINERS,
    DOUBLED,
    FUNCTION,
    IMPLIES,
    ING_NOUNS,
    NOT_COUNTED,
    NOUNS,
    NUMBERS,
    PARTICIPLES,
    PICTURES,
    PLACES,
    PREFIXES,
    QUANTIFIERS,
    STATIC,
    VERBS,
    WHAT,
    WHERE,
)


def _ing(verb: str) -> str:
    """The -ing form of a verb: "ride" -> "riding", "sit" -> "sitting", "lie" -> "lying"."""
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb in DOUBLED:
        return verb + verb[-1] + "ing"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    return verb + "ing"


@dataclass(frozen=True)
class Noun:
    """What a lexicon word means: the answer it is written as, its COCO category (or None) and its number."""

    answer: str
    category: str | None
    plural: bool


@dataclass(frozen=True)
class Lexicon:
    """Nouns by their words, the words that block each POPE category, and verbs by their forms (to -ing)."""

    nouns: dict[tuple[str, ...], Noun]
    blocks: dict[str, frozenset[str]]  # caption word -> categories a POPE "no" may not name
    verbs: dict[str, str]  # "sits", "sit", "sitting" -> "sitting"; "parked" -> "parked"

    @classmethod
    def build(cls) -> Lexicon:
        nouns: dict[tuple[str, ...], Noun] = {}
        blocks: dict[str, set[str]] = defaultdict(set)
        groups = [
            (cat.strip(), g.split())
            for line in NOUNS.strip().splitlines()
            for part in line.split(" | ")
            for cat, _, rest in [part.partition(": ")]
            for g in rest.split(", ")
        ]
        for many in (False, True):  # plurals last, so that a word of its own ("glasses") keeps its meaning
            for cat, words in groups:
                answer, category = words[0].replace("_", " "), None if cat == "-" else cat
                for word in words:
                    form = plural(word.replace("_", " ")).replace(" ", "_") if many else word
                    nouns.setdefault(tuple(form.split("_")), Noun(answer, category, many or word in PLURAL_ONLY))
        for words, noun in nouns.items():
            if noun.category:
                for w in words + tuple(noun.category.split()):
                    blocks[w].add(noun.category)
        for line in IMPLIES.strip().splitlines():
            words, _, categories = line.partition(": ")
            for w in words.split():
                blocks[w].update(c.replace("_", " ") for c in categories.split())
        verbs = {f: _ing(v) for v in VERBS for f in (v, _ing(v), plural(v))} | {p: p for p in PARTICIPLES}
        return cls(nouns, {w: frozenset(c) for w, c in blocks.items()}, verbs)

    @property
    def categories(self) -> list[str]:
        return sorted({n.category for n in self.nouns.values() if n.category})

    def noun_at(self, tokens: Sequence[str], i: int) -> tuple[Noun, int] | None:
        """The longest lexicon noun starting at ``tokens[i]``, with the index just past it."""
        for n in (3, 2, 1):
            noun = self.nouns.get(tuple(tokens[i : i + n]))
            if noun and i + n <= len(tokens):
                return noun, i + n
        return None

    def stops(self, word: str) -> bool:
        """Whether ``word`` cannot be inside a noun phrase: a function word, punctuation or a verb form."""
        return (
            word in FUNCTION
            or word in DETERMINERS
            or not word[0].isalnum()
            or word in self.verbs
            or (word.endswith("ing") and word not in ING_NOUNS)
            or (word.endswith("ed") and len(word) > 4 and "-" not in word and word not in ADJ_ED)
        )


# ---------------------------------------------------------------- reading one caption

MARKS = ",.;:!?"  # punctuation kept as tokens: it ends noun phrases


@dataclass(frozen=True)
class Mention:
    """A noun phrase: tokens ``start:end`` (determiners and modifiers first, then the noun at ``head``)."""

    noun: Noun
    start: int
    head: int
    end: int
    plural: bool
    count: int | None  # from a number word 2-10
    colors: str | None  # "red", "black and white"; "?" when the colours cannot be read
    blocked: bool  # negated or not real: no questions, no POPE "yes"

    @property
    def answer(self) -> str:
        return plural(self.noun.answer) if self.plural else self.noun.answer


def _phrase(tokens: list[str], head: int, floor: int, lex: Lexicon) -> tuple[int, list[str], list[str]]:
    """Walk back from a noun over its modifiers and determiners, not past ``floor`` (the end of the phrase before):
    (start, determiners, modifiers)."""
    j, mods = head, []
    while j > floor and len(mods) < 4:
        t = tokens[j - 1]
        between_colors = t == "and" and mods and mods[0] in COLORS and j >= 2 and tokens[j - 2] in COLORS
        adjective_ing = j == head and j >= 2 and tokens[j - 2] in ("a", "an", "the") and t.isalpha()  # "a sleeping cat"
        adjective_ing = adjective_ing and t not in FUNCTION and t not in DETERMINERS
        many = lex.nouns.get((t,), Noun("", None, False)).plural  # "two people parachute", "surfboards wave"
        if not between_colors and (many or (lex.stops(t) and not adjective_ing)):
            break
        mods.insert(0, t)
        j -= 1
    dets = []
    while j > 0 and tokens[j - 1] in DETERMINERS and len(dets) < 2:
        dets.insert(0, tokens[j - 1])
        j -= 1
    if j >= 2 and tokens[j - 1] == "of" and tokens[j - 2] in QUANTIFIERS:  # "a group of (three)"
        dets, j = ["of", *dets], j - 2
        while j > 0 and tokens[j - 1] in DETERMINERS:
            j -= 1
    return j, dets, mods


def _colors(tokens: list[str], start: int, mods: list[str], lex: Lexicon) -> str | None:
    """The colours among a phrase's modifiers, sorted and joined by "and"; "?" when they may belong to something
    else: a list cut by a comma ("a red, white and blue flag") or a noun in between ("a blue water bottle")."""
    found = sorted({COLORS[m] for m in mods if m in COLORS})
    first = next((k for k, m in enumerate(mods) if m in COLORS), len(mods))
    if (
        len(found) > 2
        or found
        and (
            (start > 0 and tokens[start - 1] in (",", *COLORS))
            or any((m,) in lex.nouns and m not in COLORS for m in mods[first:])
        )
    ):
        return "?"
    return " and ".join(found) or None


def _is_head(tokens: list[str], i: int, end: int, noun: Noun, lex: Lexicon, first: bool) -> bool:
    """Whether the noun ``tokens[i:end]`` ends its phrase, rather than modifying what follows ("a bus stop").
    A plural is a head whatever follows ("children wave"), and so is the ``first`` noun of a caption before a word
    in -s ("a dog leaps")."""
    nxt, after = (tokens + [".", "."])[end : end + 2]
    if tokens[i] in COLORS and (
        i == 0 or tokens[i - 1] not in DETERMINERS or nxt == "and" or not lex.stops(nxt) or nxt.endswith(("ed", "ing"))
    ):
        return False  # "in orange", "an orange and white cat", "an orange shirted boy": the colour, not the fruit
    if tokens[end - 1].endswith("s") and nxt in DETERMINERS:  # "a boy in black waves his arms": a verb
        return False
    if (nxt == "of" and tokens[i] in QUANTIFIERS) or (nxt in COMPOUND_ED and after not in FUNCTION):  # "snow covered"
        return False
    if nxt in lex.verbs:
        return True
    if lex.noun_at(tokens, end) is not None:
        return noun.plural
    return lex.stops(nxt) or (first and not noun.plural and nxt.endswith("s") and not nxt.endswith("ss"))


def find_mentions(tokens: list[str], lex: Lexicon) -> list[Mention]:
    """Every noun phrase of a caption whose head is a lexicon noun, in order."""
    out, i = [], 0
    while i < len(tokens):
        found = lex.noun_at(tokens, i)
        if found is None:
            i += 1
            continue
        noun, end = found
        if _is_head(tokens, i, end, noun, lex, not out):
            start, dets, mods = _phrase(tokens, i, out[-1].end if out else 0, lex)
            many = noun.plural or (tokens[i] in INVARIANT and not {"a", "an", "this", "that"} & set(dets))
            numbers = [NUMBERS[d] for d in dets if d in NUMBERS and many and not NOT_COUNTED & set(mods)]
            before = tokens[max(0, start - 2) : start] + mods
            blocked = bool(BLOCKERS & set(before)) or any(t in PICTURES for t in tokens[3:start][-3:])
            out.append(
                Mention(
                    noun,
                    start,
                    i,
                    end,
                    many,
                    numbers[0] if numbers else None,
                    _colors(tokens, start, mods, lex),
                    blocked,
                )
            )
        i = end
    return out


@dataclass(frozen=True)
class Candidate:
    """A question one caption answers, before the image's other captions are checked."""

    kind: str
    question: str
    answer: str
    about: str  # the answer word of the noun it asks about (the subject, the counted or coloured noun)
    singular: bool  # asks about "the X", so needs the image to have one X


def _clause_start(tokens: list[str]) -> int:
    i, stripped = 0, True
    while stripped:
        stripped = False
        for p in PREFIXES:
            if tokens[i : i + len(p)] == p:
                i, stripped = i + len(p), True
    return i


def _past_attributes(tokens: list[str], i: int, at: dict[int, Mention], lex: Lexicon) -> int:
    """Where the verb of a subject is, past what describes it: "a girl [in a white shirt] jumps", "a man [in blue
    and a hat] is ..."; ``i`` itself when no verb follows. "with" and "and" may not add a person or an animal."""
    j = i
    for _ in range(3):
        if j >= len(tokens) or tokens[j] not in ("in", "wearing", "with", "dressed", *(("and",) if j > i else ())):
            break  # "and" only joins descriptions: "a person and a toilet" are two subjects
        k = j + 1 + (tokens[j] == "dressed" and tokens[j + 1 : j + 2] == ["in"])
        m = at.get(k)
        if tokens[k : k + 1] and tokens[k] in COLORS and m is None:
            j = k + 1
        elif m and (tokens[j] in ("in", "wearing", "dressed") or m.noun.category not in ANIMATE):
            j = m.end
        else:
            break
    return j if j < len(tokens) and (tokens[j] in ("is", "are") or tokens[j] in lex.verbs) else i


def _subject_questions(tokens: list[str], mentions: list[Mention], lex: Lexicon) -> list[Candidate]:
    """Object and location questions about the caption's subject: "what is the man riding?"."""
    at = {m.start: m for m in mentions if not m.blocked}
    subject = at.get(_clause_start(tokens))
    if subject is None:
        return []
    i = _past_attributes(tokens, subject.end, at, lex)
    i += i < len(tokens) and tokens[i] in ("is", "are")
    if not subject.plural and tokens[i : i + 1] and tokens[i] in VERBS:  # "a man in green swim trunks"
        return []
    verb = lex.verbs.get(tokens[i]) if i < len(tokens) else None
    i += verb is not None
    be, the = ("are" if subject.plural else "is"), f"the {subject.answer}"

    def ask(kind: str, question: str, answer: Mention) -> Candidate:
        return Candidate(kind, question, answer.answer, subject.noun.answer, not subject.plural)

    prep = next((p for p in WHAT + WHERE if tokens[i : i + len(p.split())] == p.split()), None)
    if prep is None:
        obj = at.get(i) if verb else None
        return [ask("object", f"what {be} {the} {verb}?", obj)] if obj else []
    place = at.get(i + len(prep.split()))
    if place is None:
        return []
    doing = f" {verb}" if verb else ""
    if prep in WHERE and place.noun.answer in PLACES and (tokens[place.start] in DETERMINERS or not place.plural):
        return [ask("location", f"where {be} {the}{doing}?", place)]
    if prep in WHAT and (prep != "by" or verb is None or verb in STATIC):  # not "what is the woman eating by?"
        return [ask("location", f"what {be} {the}{doing} {prep}?", place)]
    return []


def caption_questions(caption: str, lex: Lexicon) -> tuple[list[Mention], list[Candidate]]:
    """A caption's noun phrases and every question it answers on its own."""
    tokens = tokenize_words(caption, MARKS)
    mentions = find_mentions(tokens, lex)
    out = _subject_questions(tokens, mentions, lex)
    for m in mentions:
        if m.blocked:
            continue
        if m.count:
            out.append(
                Candidate("number", f"how many {plural(m.noun.answer)} are there?", str(m.count), m.noun.answer, False)
            )
        if m.colors and m.colors != "?" and m.noun.category != "person":
            out.append(
                Candidate(
                    "color",
                    f"what color {'are' if m.plural else 'is'} the {m.answer}?",
                    m.colors,
                    m.noun.answer,
                    not m.plural,
                )
            )
    return mentions, out
