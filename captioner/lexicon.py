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


# ---------------------------------------------------------------- the 80 COCO objects

# Each COCO category -> the words captions use for it, comma-separated (singular; plurals follow `plural`), after
# the synonym lists of CHAIR (Rohrbach et al. 2018), shortened. The existence rule and the POPE-style benchmark
# read objects through it.
COCO_OBJECTS = {
    "person": "person, people, man, woman, boy, girl, child, kid, baby, player, guy, lady, skier, surfer, "
    "skateboarder, snowboarder, rider, batter, catcher, pitcher, umpire, tennis player, crowd, adult, "
    "teenager, toddler",
    "bicycle": "bicycle, bike, cycle",
    "car": "car, automobile, vehicle, taxi, sedan, suv",
    "motorcycle": "motorcycle, motorbike, motor bike, scooter",
    "airplane": "airplane, plane, jet, aircraft, airliner, jetliner",
    "bus": "bus",
    "train": "train, locomotive, tram, subway",
    "truck": "truck, pickup, lorry",
    "boat": "boat, ship, kayak, canoe, sailboat, yacht, ferry",
    "traffic light": "traffic light, stop light, traffic signal",
    "fire hydrant": "fire hydrant, hydrant",
    "stop sign": "stop sign",
    "parking meter": "parking meter, meter",
    "bench": "bench",
    "bird": "bird, pigeon, seagull, duck, goose, parrot",
    "cat": "cat, kitten, kitty",
    "dog": "dog, puppy, pup",
    "horse": "horse, pony",
    "sheep": "sheep, lamb, ram",
    "cow": "cow, cattle, bull, calf",
    "elephant": "elephant",
    "bear": "bear",
    "zebra": "zebra",
    "giraffe": "giraffe",
    "backpack": "backpack",
    "umbrella": "umbrella, parasol",
    "handbag": "handbag, purse",
    "tie": "tie, necktie",
    "suitcase": "suitcase, luggage",
    "frisbee": "frisbee",
    "skis": "skis, ski",
    "snowboard": "snowboard",
    "sports ball": "ball, football, soccer ball, baseball, basketball, tennis ball, volleyball",
    "kite": "kite",
    "baseball bat": "baseball bat, bat",
    "baseball glove": "baseball glove, glove, mitt",
    "skateboard": "skateboard",
    "surfboard": "surfboard, surf board",
    "tennis racket": "tennis racket, racket, racquet",
    "bottle": "bottle",
    "wine glass": "wine glass",
    "cup": "cup, mug",
    "fork": "fork",
    "knife": "knife",
    "spoon": "spoon",
    "bowl": "bowl",
    "banana": "banana",
    "apple": "apple",
    "sandwich": "sandwich, burger, hamburger, sub",
    "orange": "orange",
    "broccoli": "broccoli",
    "carrot": "carrot",
    "hot dog": "hot dog",
    "pizza": "pizza",
    "donut": "donut, doughnut",
    "cake": "cake, cupcake",
    "chair": "chair, stool",
    "couch": "couch, sofa",
    "potted plant": "potted plant, plant, houseplant",
    "bed": "bed",
    "dining table": "dining table, table",
    "toilet": "toilet",
    "tv": "tv, television",
    "laptop": "laptop, computer",
    "mouse": "mouse",
    "remote": "remote, controller",
    "keyboard": "keyboard",
    "cell phone": "cell phone, phone, cellphone, smartphone",
    "microwave": "microwave",
    "oven": "oven, stove",
    "toaster": "toaster",
    "sink": "sink",
    "refrigerator": "refrigerator, fridge",
    "book": "book",
    "clock": "clock",
    "vase": "vase",
    "scissors": "scissors",
    "teddy bear": "teddy bear, teddy",
    "hair drier": "hair drier, hair dryer, blow dryer",
    "toothbrush": "toothbrush",
}

# Words that name no visual concept: what the concept vocabulary leaves out when it counts caption words.
FUNCTION_WORDS = frozenset(
    "a an the of on in with and is are at to his her their its while it near next for by from some that this "
    "other as up down into out over under onto off there be being has have who which what very top front side "
    "another each one something around behind through along across towards toward against back together".split()
)
