"""A visual chat (Visual Dialog's form, Das et al.): the caption opens it, then question follows question.

The models have no memory: each answer comes from the photo and the question alone. One rule carries a
conversation (:func:`resolve`): the **subject** of a turn is its first noun phrase, a determiner (``the``, ``a``,
``this``...) and the words after it up to a preposition, a verb, a conjunction, a colour or size word after the
first (``"is the mug white?"`` names ``the mug``) or the end (``"a cat drinking water"`` names ``the cat``; ``"is
there a fire hydrant on the street?"`` names ``the fire hydrant``); words like "picture" or "photo" name the
photo, not a subject. A question that names none keeps the last one named, by the
caption or an earlier question. In a question, then,

- a pronoun (it, they, them, he, she, him) is read as that subject, and a possessive (its, their, his, her) as
  its possessive: after "a cat drinking...", "what color is it?" is asked as "what color is the cat?";
- a bare count, "how many" followed by a verb or nothing ("how many are there?"), is read with the subject's
  noun in the plural: "how many cats are there?".

The question as it was read is shown beside its answer, so a wrong guess can be seen and asked again.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Sequence

from .lexicon import AUXILIARIES, COLORS, DETERMINERS, POSSESSIVES, PRONOUNS, plural
from .settings import check, setting
from .vocab import detokenize, tokenize_words

# Words that end a noun phrase: prepositions, verbs and auxiliaries, conjunctions, question words.
STOPS = {
    "on",
    "in",
    "at",
    "of",
    "with",
    "to",
    "from",
    "by",
    "near",
    "behind",
    "under",
    "over",
    "above",
    "below",
    "next",
    "beside",
    "inside",
    "outside",
    "into",
    "onto",
    "for",
    "about",
    "around",
    "through",
    "up",
    "down",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "do",
    "does",
    "did",
    "has",
    "have",
    "had",
    "can",
    "could",
    "will",
    "would",
    "should",
    "look",
    "looks",
    "and",
    "or",
    "but",
    "that",
    "which",
    "who",
    "where",
    "what",
    "how",
    "why",
    "when",
    "there",
    "here",
    "made",
    "sitting",
    "standing",
}
ADJECTIVES = set(COLORS) | {
    "big",
    "small",
    "large",
    "little",
    "tall",
    "short",
    "old",
    "new",
    "young",
    "open",
    "closed",
    "empty",
    "full",
    "wet",
    "dry",
    "clean",
    "dirty",
    "real",
    "happy",
    "visible",
    "alive",
    "edible",
}
PHOTO = {"picture", "photo", "photograph", "image", "scene", "pic", "shot"}
MAX_SUBJECT_WORDS = 3  # "the fire hydrant", "the red double decker": longer runs are cut
MARKS = string.punctuation  # kept as tokens: they end a noun phrase, and the question is rebuilt from its tokens


@dataclass
class ChatLimits:
    """What one chat request may carry (the app's ``/chat`` checks these)."""

    max_messages: int = setting(
        200, "most messages a chat's history may hold (the caption, questions, answers)", low=1, high=100_000
    )
    max_message_chars: int = setting(2000, "most characters in one message of a chat's history", low=1, high=1_000_000)

    def __post_init__(self) -> None:
        check(self)


CHAT_LIMITS = ChatLimits()


def subject_of(text: str) -> str | None:
    """The turn's subject, as ``the`` and its noun phrase (see the module docstring); None when it names none."""
    words = tokenize_words(text, MARKS)
    for i, word in enumerate(words):
        if word not in DETERMINERS:
            continue
        phrase: list[str] = []
        for w in words[i + 1 :]:
            clitic = w.startswith("'") and len(w) > 1  # "the man's hat": a possessive stays in the phrase
            if (
                w in STOPS
                or w in DETERMINERS
                or w in PRONOUNS
                or not (w[0].isalnum() or clitic)
                or w.endswith("ing")
                or phrase
                and w in ADJECTIVES
            ):  # "the mug white": said of the mug
                break
            if len(phrase) - sum(p.startswith("'") for p in phrase) == MAX_SUBJECT_WORDS and not clitic:
                break
            phrase.append(w)
        if phrase and not PHOTO & set(phrase):
            return "the " + detokenize(phrase)
    return None


def resolve(question: str, subject: str | None) -> str:
    """``question`` with its pronouns, possessives and bare "how many" read as ``subject`` (the module's rule)."""
    if not subject:
        return question
    out, words = [], tokenize_words(question, MARKS, lower=False)
    for i, word in enumerate(words):
        lower = word.lower()
        if lower in PRONOUNS:
            out.append(subject)
        elif lower in POSSESSIVES:
            out.append(subject + "'s")
        else:
            out.append(word)
        following = words[i + 1].lower() if i + 1 < len(words) else ""
        if (
            lower == "many"
            and i > 0
            and words[i - 1].lower() == "how"
            and (following in AUXILIARIES or not following[:1].isalnum())
        ):
            out.append(plural(" ".join(subject.split()[1:])))  # "the red cat" -> "red cats"
    return re.sub(r" ([?.!,;:])", r"\1", detokenize(out))


def read_turn(caption: str, questions: Sequence[str], question: str) -> str:
    """``question`` as the chat reads it, after the caption and the earlier ``questions`` (as they were typed):
    each earlier question is read in turn, and the last subject named stands for the pronouns of this one."""
    subject = subject_of(caption)
    for earlier in questions:
        subject = subject_of(resolve(earlier, subject)) or subject
    return resolve(question, subject)
