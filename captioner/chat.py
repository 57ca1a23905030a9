"""A visual chat (Visual Dialog's form, Das et al.): the caption opens it, then question follows question.

The models have no memory: each answer comes from the photo and the question alone. One rule carries a
conversation (:func:`read_turn`): the last thing named, by the caption, a question or one of the chat's own answers,
stands for the pronouns of the next question.

- The **subject** a caption or a question names is its first noun phrase, a determiner (``the``, ``a``,
  ``this``...) and the words after it up to a preposition, a verb, a conjunction, a colour or size word after the
  first (``"is the mug white?"`` names ``the mug``) or the end (``"a cat drinking water"`` names ``the cat``; ``"is
  there a fire hydrant on the street?"`` names ``the fire hydrant``); words like "picture" or "photo" name the
  photo, not a subject.
- An **answer** names a thing when it is one (``umbrella``, ``frisbee``, ``hot dog``: ``the umbrella``), and
  nothing when it is yes or no, a number, a colour, an activity (``surfing``), a sport, a direction, a time or a
  kind of weather (:func:`named_by_answer`): after "is there a dog?" -> "yes", *it* is still the dog. The thing
  stands for it, they and its, not for he, she or his: after "what is he holding?" -> "umbrella", *he* is still
  the man.

A turn that names nothing keeps the subject before it. In a question, then,

- a pronoun (it, they, them, he, she, him) is read as that subject, and a possessive (its, their, his, her) as
  its possessive: after "a cat drinking...", "what color is it?" is asked as "what color is the cat?"; after
  "what is the man holding?" -> "umbrella", as "what color is the umbrella?";
- a bare count, "how many" followed by a verb or nothing ("how many are there?"), is read with the subject's
  noun in the plural: "how many cats are there?".

The question as it was read is shown beside its answer, so a wrong guess can be seen and asked again.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Sequence

from .lexicon import AUXILIARIES, COLORS, DETERMINERS, NUMBER_WORDS, POSSESSIVES, PRONOUNS, plural
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
# Answers that name no thing for a pronoun to stand for, as a whole (besides the adjectives above, and answers with
# a number, a colour or a word in -ing): yes and no, amounts, directions, times, weather, sexes, sports.
NOT_THINGS = frozenset(
    "yes no maybe nothing none nobody nowhere unknown one zero many few several some lots all both "
    "left right front back top bottom middle center side outside indoors outdoors "
    "day night daytime nighttime morning noon afternoon evening summer winter spring fall autumn "
    "sunny cloudy rainy snowy foggy clear cold hot warm male female "
    "tennis baseball soccer football basketball golf hockey volleyball rugby cricket polo".split()
)
PERSONAL = frozenset("he she him his her".split())  # a person: never a thing an answer named ("what is he holding?")
ANSWER = re.compile(r"(.*?) \(\d+%\)")  # an answer as the chat shows it: "umbrella (73%) (not sure)"
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


def resolve(question: str, subject: str | None, thing: str | None = None) -> str:
    """``question`` with its pronouns, possessives and bare "how many" read as ``subject`` (the module's rule); when
    an answer has named a ``thing`` since, it, they, its and "how many" are read as that thing, and he, she, his
    and her still as ``subject``."""
    if not subject and not thing:
        return question
    out, words = [], tokenize_words(question, MARKS, lower=False)
    for i, word in enumerate(words):
        lower = word.lower()
        meant = subject if lower in PERSONAL else thing or subject
        if meant and lower in PRONOUNS:
            out.append(meant)
        elif meant and lower in POSSESSIVES:
            out.append(meant + "'s")
        else:
            out.append(word)
        following = words[i + 1].lower() if i + 1 < len(words) else ""
        if (
            lower == "many"
            and i > 0
            and words[i - 1].lower() == "how"
            and (following in AUXILIARIES or not following[:1].isalnum())
        ):
            out.append(plural(" ".join((thing or subject).split()[1:])))  # "the red cat" -> "red cats"
    return re.sub(r" ([?.!,;:])", r"\1", detokenize(out))


def named_by_answer(answer: str) -> str | None:
    """The thing one of the chat's answers names, as a subject (``"umbrella (73%)"`` -> ``"the umbrella"``); None
    when it names no thing (see the module docstring) or is more than a short noun phrase."""
    shown = ANSWER.match(answer)
    words = (shown.group(1) if shown else answer).replace("_", " ").lower().split()  # "garbage_bin": a class name
    if not 0 < len(words) <= MAX_SUBJECT_WORDS or not all(w.isalpha() for w in words):  # "2", "1-877", a sentence
        return None
    if " ".join(words) in NOT_THINGS | ADJECTIVES or any(w in COLORS or w in NUMBER_WORDS or w in STOPS for w in words):
        return None  # "tennis" names no thing, "tennis ball" does; "black and white" does not
    return subject_of("the " + " ".join(words))  # None for a word in -ing or one of PHOTO


def read_turn(caption: str, earlier: Sequence[tuple[str, str]], question: str) -> str:
    """``question`` as the chat reads it, after the caption and the ``earlier`` turns, in order, each ``(role,
    text)``: a ``"user"`` question as it was typed, or an ``"assistant"`` answer as the chat showed it. Each
    earlier question is read in turn; the last subject named by the caption or a question, and a thing named by
    an answer since, stand for the pronouns of this one (see :func:`resolve`)."""
    subject, thing = subject_of(caption), None
    for role, text in earlier:
        if role != "user":
            thing = named_by_answer(text) or thing
        elif named := subject_of(resolve(text, subject, thing)):
            if thing and (named == thing or named.startswith(thing + "'")):
                thing = named  # "is it open?", "is its handle black?": still the thing, never he or she
            else:
                subject, thing = named, None  # named after the answer: the newer
    return resolve(question, subject, thing)
