"""Visual concepts learned from captions: which objects, colours, counts, actions and scenes a photo holds.

After Fang et al. (2015), "From Captions to Visual Concepts and Back". A detector per concept word reads every
region of the encoder's grid; the image holds the concept if any region does, by a noisy-OR:

    p_rw = sigmoid(z_rw)                      z: (N, R, K) region logits, R = 49 regions of a 7 x 7 grid
    P_w  = 1 - prod_r (1 - p_rw)              the image-level probability, (N, K)

It is trained from captions alone (multiple-instance learning: an image is a bag of regions, labelled by the
words its captions use), so it also says *where* a concept fires: the region of the largest ``z_rw``. The
vocabulary maps the many words of captions and questions onto one concept each: plurals, and the synonyms of
the 80 COCO objects ("bike" is ``bicycle``, "puppies" is ``dog``). ``captioner.look`` answers questions from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from .checkpoint import MODEL_FILE, read_checkpoint_files
from .io import config_errors
from .lexicon import COCO_OBJECTS, COLORS, DETERMINERS, NUMBER_WORDS, plural
from .schema import build_checked, read_encoder, section
from .settings import MAX_DIM, check, setting
from .vocab import tokenize_words

CONCEPTS_FILE = "concepts.json"
WORD_CLASSES = ("object", "colour", "count", "action", "scene", "other")
SCENES = frozenset(
    "kitchen bathroom bedroom room office restaurant street road city park beach ocean sea lake river water field "
    "grass snow mountain hill forest woods sky airport station market yard garden farm desert zoo court stadium "
    "sidewalk highway bridge building house store shop playground pool indoors outdoors night".split()
)


@lru_cache(maxsize=1)
def object_forms() -> dict[str, str]:
    """Every word or phrase the COCO objects go by, singular and plural -> its COCO category."""
    forms = {}
    for category, names in COCO_OBJECTS.items():
        for name in [category, *names.split(", ")]:
            forms.setdefault(name, category)
            forms.setdefault(plural(name), category)
    return forms


def named_objects(text: str) -> set[str]:
    """The COCO objects a caption names, by any of their words ("two puppies" -> {"dog"}; "a hot dog" -> {"hot
    dog"}, not "dog")."""
    forms, tokens, found, i = object_forms(), tokenize_words(text), set(), 0
    while i < len(tokens):
        pair = " ".join(tokens[i : i + 2])
        step = 2 if i + 1 < len(tokens) and pair in forms else 1
        phrase = pair if step == 2 else tokens[i]
        if phrase in forms:
            found.add(forms[phrase])
        i += step
    return found


def word_class(concept: str) -> str:
    """The class a concept is reported under (mean average precision is given per class)."""
    if concept in COCO_OBJECTS or concept in object_forms():
        return "object"
    if concept in COLORS:
        return "colour"
    if concept in NUMBER_WORDS:
        return "count"
    if concept in SCENES:
        return "scene"
    if concept.endswith("ing") and len(concept) > 4:
        return "action"
    return "other"


@dataclass
class ConceptVocab:
    """The concepts, their classes, and the forms each is named by (``forms``: word or two-word phrase -> concept).

    A COCO category's synonyms name the category and also their own concept when they have one ("man" is ``man``
    and ``person``); other words name themselves in the singular ("dogs" -> ``dog``).
    """

    words: list[str]
    forms: dict[str, list[str]]

    def __post_init__(self) -> None:
        if not self.words or len(set(self.words)) != len(self.words):
            raise ValueError("a concept vocabulary needs distinct words")
        known = set(self.words)
        self.forms = {form: [c for c in concepts if c in known] for form, concepts in self.forms.items()}
        self.index = {w: i for i, w in enumerate(self.words)}
        self.classes = [word_class(w) for w in self.words]

    def concepts_in(self, text: str) -> set[str]:
        """The concepts a caption names (two-word phrases first: "hot dog" is not a dog)."""
        tokens, found, i = tokenize_words(text), set(), 0
        while i < len(tokens):
            pair = " ".join(tokens[i : i + 2])
            if i + 1 < len(tokens) and pair in self.forms:
                found.update(self.forms[pair])
                i += 2
                continue
            found.update(self.forms.get(tokens[i], ()))
            i += 1
        return found

    def concept_of(self, phrase: str) -> str | None:
        """The one concept a question's object phrase names ("a red bus" -> None; "buses" -> ``bus``), preferring
        the COCO category over a word of its own: "is there a bike?" asks about bicycles."""
        words = tokenize_words(phrase)
        while words and words[0] in DETERMINERS | {"any", "some"}:
            words = words[1:]
        key = " ".join(words)
        concepts = self.forms.get(key, [])
        category = [c for c in concepts if c in COCO_OBJECTS]
        return (category or concepts or [None])[0]

    def to_json(self) -> dict:
        return {"words": self.words, "forms": self.forms}

    @classmethod
    def from_json(cls, data: dict) -> ConceptVocab:
        return cls(list(data["words"]), {k: list(v) for k, v in data["forms"].items()})


@dataclass
class ConceptConfig:
    """Shape of the concept detectors: an MLP over each region's features, one logit per concept."""

    num_concepts: int  # these two the data decides
    feature_dim: int
    hidden_dim: int = setting(512, "hidden size of the per-region detector MLP", low=1, high=MAX_DIM)
    dropout: float = setting(0.3, "dropout probability", low=0, below=1)

    def __post_init__(self) -> None:
        check(self)


class ConceptDetector(nn.Module):
    """Region logits and image-level concept probabilities from region features."""

    def __init__(self, config: ConceptConfig):
        super().__init__()
        self.config = c = config
        self.mlp = nn.Sequential(
            nn.Dropout(c.dropout),
            nn.Linear(c.feature_dim, c.hidden_dim),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.hidden_dim, c.num_concepts),
        )
        # Most concepts are absent from most photos, and any of 49 regions can say "present": starting each region
        # at p = 0.0025 starts the image at about 0.1 instead of 1 - 0.5^49, so the first steps are not spent
        # learning that.
        nn.init.constant_(self.mlp[-1].bias, -6.0)

    def region_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Region features ``(N, R, feature_dim)``, L2-normalised per region, to logits ``(N, R, K)``."""
        v = nn.functional.normalize(features.float(), dim=-1) * self.config.feature_dim**0.5
        return self.mlp(v)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log_absent, region_logits)``: log(1 - P) ``(N, K)``, the noisy-OR's log probability that no region
        holds the concept (sum over regions of log(1 - p_rw) = -softplus(z_rw)), and the logits ``(N, R, K)``."""
        z = self.region_logits(features)  # (N, R, K)
        return -nn.functional.softplus(z).sum(1), z  # (N, K), (N, R, K)

    @torch.inference_mode()
    def probabilities(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-level probabilities ``(N, K)`` and the region each concept fires most in ``(N, K)``."""
        log_absent, z = self(features)
        return -torch.expm1(log_absent), z.argmax(1)


def noisy_or_loss(log_absent: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the noisy-OR probabilities ``P = 1 - exp(log_absent)`` against 0/1 ``labels``
    ``(N, K)``, computed from ``log_absent`` so that P near 0 or 1 loses no precision."""
    log_present = torch.log(-torch.expm1(log_absent.clamp(max=-1e-6)))  # log P
    return -(labels * log_present + (1 - labels) * log_absent).mean()


@dataclass
class Concepts:
    """Trained concept detectors with their vocabulary, the encoder they read, and the existence rule's calibration
    (``existence``: ``slope``, ``intercept``, ``threshold``; see ``captioner.train.concepts``)."""

    model: ConceptDetector
    vocab: ConceptVocab
    encoder: str
    existence: dict

    @classmethod
    def load(cls, folder: str | Path) -> Concepts:
        """Concept weights from a folder of ``config.json``, ``concepts.json`` and ``model.safetensors``; a
        one-line error naming the file that is missing or wrong."""
        folder = Path(folder)
        files = read_checkpoint_files(folder, (CONCEPTS_FILE,))
        config_file = folder / "config.json"
        config = files["config.json"]
        with config_errors(config_file, "model"):
            vocab = ConceptVocab.from_json(files[CONCEPTS_FILE])
            shape = ConceptConfig(**section(config, "model"))
            existence = {k: float(section(config, "existence")[k]) for k in ("slope", "intercept", "threshold")}
            if not all(math.isfinite(v) for v in existence.values()) or shape.num_concepts != len(vocab.words):
                raise ValueError("the existence calibration must be finite numbers, and one concept per detector")
        model, _ = build_checked(config_file, folder / MODEL_FILE, "model", lambda: ConceptDetector(shape))
        return cls(model.eval(), vocab, read_encoder(config), existence)

    def seen(self, features: torch.Tensor) -> SeenConcepts:
        """One image's concepts (``features`` ``(1, R, D)``), as multiple choice reads them."""
        return SeenConcepts(self.detect(features)[0][0], self.vocab)

    def detect(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-level probabilities ``(N, K)`` and region logits ``(N, R, K)`` of region features ``(N, R, D)``."""
        with torch.inference_mode():
            log_absent, z = self.model(features)
        return -torch.expm1(log_absent), z


def concepts_beside(folder: str | Path, encoder: str) -> Concepts | None:
    """The concept weights in ``concepts/`` beside a VQA weights folder (the shipped ``weights/concepts`` beside
    ``weights/vqa``), when there are some for the same encoder; else None: the VQA head answers alone."""
    candidate = Path(folder).parent / "concepts"
    if not (candidate / "config.json").exists():
        return None
    concepts = Concepts.load(candidate)
    return concepts if concepts.encoder == encoder else None


LEAST_PROBABILITY = 1e-4  # a concept's probability as multiple choice reads it, at least: one sure miss does not decide


@dataclass
class SeenConcepts:
    """One image's concept probabilities ``(K,)`` with the vocabulary that names them: what multiple choice reads of
    a candidate (``captioner.choices``: its ``c`` and ``n``)."""

    probabilities: torch.Tensor
    vocab: ConceptVocab

    def features(self, choice: str) -> tuple[float, float]:
        """(c, n) of a candidate: the mean log-probability of the concepts it names (each at least
        :data:`LEAST_PROBABILITY`), and 1.0 in place of it when it names none."""
        named = self.vocab.concepts_in(choice)
        if not named:
            return 0.0, 1.0
        p = self.probabilities[[self.vocab.index[c] for c in sorted(named)]]
        return float(p.clamp(min=LEAST_PROBABILITY).log().mean()), 0.0
