"""The shared word lists of English the project's rules read: colours, number words, determiners, pronouns,
auxiliary verbs, and the plural rule. One list per idea, so that the chat, the question generator and the VQA
breakdown by question type agree on what a colour or an auxiliary is. No torch, no data: the core may import it.
"""

from __future__ import annotations

# A colour word -> the colour it answers ("grey" and "gray" are one colour, "navy" is blue).
COLORS = {
    "red": "red",
    "blue": "blue",
    "green": "green",
    "yellow": "yellow",
    "white": "white",
    "black": "black",
    "brown": "brown",
    "orange": "orange",
    "pink": "pink",
    "purple": "purple",
    "gray": "gray",
    "grey": "gray",
    "silver": "silver",
    "gold": "gold",
    "tan": "tan",
    "beige": "beige",
    "navy": "blue",
}
NUMBER_WORDS = {w: i for i, w in enumerate("two three four five six seven eight nine ten".split(), 2)}  # counts 2-10
DETERMINERS = frozenset("a an the this that these those".split())  # articles and demonstratives: "the mug"
PRONOUNS = frozenset("it they them he she him".split())  # third person: what a chat reads as the last subject
POSSESSIVES = frozenset("its their his her".split())  # their possessives
# Auxiliary verbs, which open a yes/no question ("is there ...", "does the man ...").
AUXILIARIES = frozenset(
    "is are was were am do does did can could will would should shall has have had may might must".split()
)

# ---------------------------------------------------------------- plurals

PLURAL_ONLY = frozenset(
    "skis scissors glasses sunglasses pants jeans shorts goggles trousers tracks stairs people "
    "cattle boots headphones clothes woods".split()
)  # already plural: "how many skis"
INVARIANT = frozenset("sheep fish deer".split())  # one sheep, two sheep
UNCOUNTED = frozenset("broccoli luggage".split())  # no plural of their own
IRREGULAR = {
    "man": "men",
    "woman": "women",
    "child": "children",
    "person": "people",
    "gentleman": "gentlemen",
    "policeman": "policemen",
    "knife": "knives",
    "shelf": "shelves",
    "mouse": "mice",
    "goose": "geese",
    "calf": "calves",
    "bus": "buses",
    "foot": "feet",
    "tooth": "teeth",
}


def plural(word: str) -> str:
    """The plural of a noun (of its last word): "hot dog" -> "hot dogs", "bus" -> "buses", "man" -> "men"."""
    *head, last = word.split(" ")
    if last in PLURAL_ONLY or last in INVARIANT or last in UNCOUNTED:
        many = last
    elif last in IRREGULAR:
        many = IRREGULAR[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        many = last + "es"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        many = last[:-1] + "ies"
    else:
        many = last + "s"
    return " ".join([*head, many])
