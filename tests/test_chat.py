"""The chat's one rule: a pronoun or a bare "how many" is read as the last thing named, by the caption, a question
or one of the chat's own answers."""

from __future__ import annotations

import pytest

from captioner.chat import named_by_answer, read_turn, resolve, subject_of
from captioner.lexicon import plural  # the rule chat uses for a bare "how many"

CAT = "A cat drinking water out of a coffee mug."


@pytest.mark.parametrize(
    "text, subject",
    [
        (CAT, "the cat"),  # stops at a verb in -ing
        ("is there a fire hydrant on the street?", "the fire hydrant"),  # two words, stops at a preposition
        ("what is the man holding?", "the man"),
        ("a red double decker bus parked by a curb", "the red double decker"),  # at most three words
        ("is the mug white?", "the mug"),  # a colour after the noun is said of it
        ("what is in the picture?", None),  # the photo is not a subject
        ("what color is it?", None),
        ("how many dogs are there?", None),  # no determiner: no subject
    ],
)
def test_a_subject_is_the_first_noun_phrase(text, subject):
    assert subject_of(text) == subject


@pytest.mark.parametrize(
    "question, read",
    [
        ("what color is it?", "what color is the cat?"),
        ("What is it doing?", "What is the cat doing?"),
        ("is its tail long?", "is the cat's tail long?"),
        ("what are they drinking?", "what are the cat drinking?"),
        ("where is she sitting?", "where is the cat sitting?"),
        ("how many are there?", "how many cats are there?"),
        ("how many?", "how many cats?"),
        ("how many mugs are there?", "how many mugs are there?"),  # a count with its own noun is left alone
        ("what is in the picture?", "what is in the picture?"),  # no pronoun: as typed
        ("is the mug white?", "is the mug white?"),
        ("is it italian?", "is the cat italian?"),
        ("does this item belong to it?", "does this item belong to the cat?"),
    ],
)
def test_a_pronoun_is_read_as_the_last_subject(question, read):
    assert resolve(question, subject_of(CAT)) == read


def test_without_a_subject_the_question_is_as_typed():
    assert resolve("what color is it?", None) == "what color is it?"
    assert read_turn("", [], "how many are there?") == "how many are there?"


def asked(*questions: str) -> list[tuple[str, str]]:
    """Earlier turns that are questions only, as :func:`read_turn` takes them."""
    return [("user", q) for q in questions]


def test_the_last_subject_named_carries_over_turns():
    assert read_turn(CAT, asked("is there a dog on the sofa?"), "what color is it?") == "what color is the dog?"
    # a question that names nothing keeps the subject before it, and a resolved one passes its subject on
    earlier = asked("is there a dog on the sofa?", "what is in the picture?", "is it big?")
    assert read_turn(CAT, earlier, "how many are there?") == "how many dogs are there?"
    assert read_turn("a man riding a wave", asked("what is he wearing?"), "is he young?") == "is the man young?"


MAN = "a man holding an umbrella on a city street"


@pytest.mark.parametrize(
    "answer, question, read",
    [
        ("umbrella (73%)", "what color is it?", "what color is the umbrella?"),  # issue 41's example
        ("umbrella (41%) (not sure)", "is its handle black?", "is the umbrella's handle black?"),
        ("frisbee (88%)", "how many are there?", "how many frisbees are there?"),
        ("hot dog (30%)", "what is on it?", "what is on the hot dog?"),
        ("garbage_bin (12%)", "is it full?", "is the garbage bin full?"),  # a class name, read as words
        ("umbrella (73%)", "is he young?", "is the man young?"),  # he, his, she: a person, never the thing
    ],
)
def test_a_pronoun_is_read_as_the_thing_the_last_answer_named(answer, question, read):
    earlier = [("user", "what is the man holding?"), ("assistant", answer)]
    assert read_turn(MAN, earlier, question) == read


@pytest.mark.parametrize(
    "answer",
    ["yes (97%)", "no (12%) (not sure)", "2 (40%)", "two (20%)", "black (50%)", "black and white (3%)", "tennis (9%)"],
)
def test_an_answer_that_names_no_thing_leaves_the_subject(answer):
    assert named_by_answer(answer) is None
    earlier = [("user", "is there a dog on the sofa?"), ("assistant", answer)]
    assert read_turn(CAT, earlier, "what color is it?") == "what color is the dog?"


def test_the_newest_of_an_answer_and_a_question_wins():
    said = [("user", "what is the man holding?"), ("assistant", "umbrella (73%)")]
    assert read_turn(MAN, [*said, ("user", "is there a dog on the street?")], "is it big?") == "is the dog big?"
    said += [("user", "is it open?"), ("assistant", "yes (80%)"), ("user", "what is he wearing?")]
    assert read_turn(MAN, [*said, ("assistant", "jacket (60%)")], "what color is it?") == "what color is the jacket?"
    assert read_turn(MAN, [*said, ("assistant", "nothing (5%)")], "what color is it?") == "what color is the man?"


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
    ],
)
def test_plural(noun, many):
    assert plural(noun) == many
