"""Visual question answering: the "deeper LSTM Q + norm I" baseline of Antol et al. (2015).

The question is tokenized and encoded to ids by the same :class:`Vocabulary` code as captions
(without ``<start>``/``<end>``), embedded, and read by an LSTM of 1 or 2 layers; the final hidden
and cell states of every layer, projected, are the question vector. The image vector ``v`` is
the captioning encoder's features (same encoders, same feature cache), L2-normalised so that
images of different contrast weigh alike, then projected. The two are fused by concatenation (or,
as in the paper, element-wise product) and an MLP classifies over the answer vocabulary. On
DAQUAR's by-image validation split concatenation did better (23.6% against 23.3%, seeds 0-2): a
product has to carry the question through the image vector, and on 5,400 training questions the
question alone is most of what there is to learn.

``use_image=False`` builds the same model with no image path at all: the question-only baseline
that tells how much an image+question model really looks at the image.

Answers and targets (see ``train_vqa``): VQA v2 has ten human answers per question and the
target of an answer is its soft score, the VQA accuracy that predicting it would earn. DAQUAR
and easy-vqa have one answer per question, scored by exact match. Some DAQUAR answers are lists
("chair, table"); each list is one class, its items sorted (``data.daquar_answer``), and it is
scored by exact match on the whole list. Training on the first item instead would teach answers
that exact match marks wrong, and sharing the credit among items would favour single items that
never match a list; a list class is what the model is scored on, so it is what it learns.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .checkpoint import CONFIG_FILE, MODEL_FILE, config_errors, load_checkpoint, load_weights, read_json
from .encoder import ImageEncoder, Preprocessing, build_encoder
from .features import encode_images
from .images import ImageInput
from .precision import Precision, resolve_precision
from .pretrained import Weights, folder_preprocessing, resolve_weights
from .vocab import Vocabulary, pad_ids, tokenize

FUSIONS = ("product", "concat")
ANSWERS_FILE = "answers.json"


@dataclass
class VQAConfig:
    """Shape of the VQA model; ``use_image=False`` is the question-only ablation."""

    vocab_size: int
    num_answers: int
    feature_dim: int
    embed_dim: int = 300
    hidden_dim: int = 256
    num_layers: int = 1
    fused_dim: int = 512
    mlp_dim: int = 512
    fusion: str = "concat"
    use_image: bool = True
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {self.fusion!r}")
        if self.num_layers < 1:
            raise ValueError("num_layers must be at least 1")


class VQAModel(nn.Module):
    """Answer logits from image features and question token ids."""

    def __init__(self, config: VQAConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=Vocabulary.pad_id)
        self.rnn = nn.LSTM(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True,
                           dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.question_proj = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(2 * c.num_layers * c.hidden_dim, c.fused_dim),
                                           nn.Tanh())
        if c.use_image:
            self.image_proj = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.feature_dim, c.fused_dim), nn.Tanh())
        fused = 2 * c.fused_dim if c.use_image and c.fusion == "concat" else c.fused_dim
        self.classifier = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(fused, c.mlp_dim), nn.Tanh(),
                                        nn.Dropout(c.dropout), nn.Linear(c.mlp_dim, c.num_answers))

    def encode_question(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Padded ids ``(N, T)`` and word counts ``(N,)`` to question vectors ``(N, fused_dim)``.

        The LSTM runs in float32 under any autocast: oneDNN has no reduced-precision LSTM on every CPU, and
        a question costs little next to the image."""
        x = torch.tanh(self.embed(tokens))  # (N, T, embed_dim)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        with torch.autocast(tokens.device.type, enabled=False):
            _, (h, c) = self.rnn(packed)  # each (layers, N, hidden)
        hc = torch.cat([h, c], dim=0).transpose(0, 1).reshape(tokens.shape[0], -1)  # (N, 2 * layers * hidden)
        return self.question_proj(hc)  # (N, fused_dim)

    def encode_image(self, features: torch.Tensor) -> torch.Tensor:
        """CNN features, pooled ``(N, feature_dim)`` or regions ``(N, R, feature_dim)`` (averaged),
        L2-normalised, to image vectors ``(N, fused_dim)``.

        The unit vector is scaled by sqrt(feature_dim), to components of unit mean square: at
        norm 1 the projection's outputs start near 0 and a product with them would hide the question.
        """
        if features.dim() == 3:
            features = features.mean(1)  # (N, feature_dim)
        v = nn.functional.normalize(features, dim=-1) * self.config.feature_dim ** 0.5  # (N, feature_dim)
        return self.image_proj(v)  # (N, fused_dim)

    def forward(self, features: torch.Tensor | None, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Answer logits ``(N, num_answers)``; ``features`` is never read by a question-only model."""
        q = self.encode_question(tokens, lengths)  # (N, fused_dim)
        if not self.config.use_image:
            return self.classifier(q)
        v = self.encode_image(features)  # (N, fused_dim)
        fused = q * v if self.config.fusion == "product" else torch.cat([q, v], dim=-1)  # (N, fused_dim or twice)
        return self.classifier(fused)  # (N, num_answers)


class VQAPredictor:
    """A trained VQA model with its vocabularies and encoder: images and questions in, answers out."""

    def __init__(self, model: VQAModel, vocab: Vocabulary, answers: list[str], encoder: ImageEncoder,
                 precision: str | Precision = "auto"):
        self.model = model.eval()
        self.vocab = vocab
        self.answers = answers
        self.encoder = encoder
        self.runtime = resolve_precision(precision)  # ValueError (one line) for one this CPU cannot run

    @property
    def precision(self) -> str:
        """The precision inference runs at (``auto`` resolved); see :mod:`captioner.precision`."""
        return self.runtime.name

    @classmethod
    def from_pretrained(cls, weights: str | Path | Weights | None = None, encoder: ImageEncoder | None = None,
                        encoder_weights: str | None = None, precision: str | Precision = "auto") -> "VQAPredictor":
        """Load a VQA weights entry (or its name; default: the default entry) or a folder holding ``config.json``
        or ``vqa/config.json``; ``encoder`` is shared when it is the one the model was trained on."""
        runtime = resolve_precision(precision)  # before anything is loaded
        path, entry = resolve_weights(weights, "vqa")
        return cls.from_checkpoint(path, encoder, encoder_weights, entry.preprocessing if entry else None, runtime)

    @classmethod
    def from_checkpoint(cls, path: str | Path, encoder: ImageEncoder | None = None, encoder_weights: str | None = None,
                        preprocessing: Preprocessing | None = None,
                        precision: str | Precision = "auto") -> "VQAPredictor":
        """Load a ``train-vqa`` checkpoint; ``encoder`` is shared when it is the one the model was trained on.
        ``preprocessing`` defaults to ``config.json["preprocessing"]``, else the encoder's current one."""
        path = Path(path)
        tensors, config = load_checkpoint(path)
        if config.get("task") != "vqa":
            raise ValueError(f"{path}: not a VQA checkpoint")
        vocab, answers = Vocabulary.load(path / "vocab.json"), read_json(path / ANSWERS_FILE)
        with config_errors(path / CONFIG_FILE):
            model = VQAModel(VQAConfig(**config["model"]))
            encoder_name = config["encoder"]
            preprocessing = preprocessing or folder_preprocessing(config)
            if (model.config.vocab_size, model.config.num_answers) != (len(vocab), len(answers)):
                raise ValueError(f"vocab_size {model.config.vocab_size} and num_answers {model.config.num_answers}, "
                                 f"but vocab.json has {len(vocab)} words and {ANSWERS_FILE} {len(answers)} answers")
        load_weights(model, tensors, path / MODEL_FILE)
        if encoder is None or encoder.spec.name != encoder_name or encoder.preprocessing != (
                preprocessing or encoder.spec.preprocessing):
            encoder = build_encoder(encoder_name, encoder_weights, preprocessing=preprocessing)
        return cls(model, vocab, [str(a) for a in answers], encoder, precision)

    def question_ids(self, question: str) -> list[int]:
        """Word ids of a question; ValueError (one line) when it is empty or longer than the model reads."""
        words = tokenize(question)
        if not words:
            raise ValueError("the question is empty (it has no words)")
        if len(words) > self.vocab.max_length:
            raise ValueError(f"the question is too long ({len(words)} words; at most {self.vocab.max_length})")
        return self.vocab.encode(question, add_markers=False)

    def unknown_words(self, question: str) -> list[str]:
        """Words of ``question`` outside the vocabulary; the model reads them as ``<unk>``."""
        return [w for w in tokenize(question) if w not in self.vocab.index]

    def features(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Encoder region features ``(N, R, feature_dim)``, float32 at any precision; raises BadImageError for an
        unreadable image."""
        with self.runtime.autocast():
            return encode_images(self.encoder, images).float()

    @torch.inference_mode()
    def answer(self, features: torch.Tensor, questions: list[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``top_k`` answers and their probabilities for each (image features row, question) pair."""
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        tokens, lengths = pad_ids([self.question_ids(q) for q in questions])
        with self.runtime.autocast():
            logits = self.model(features.float(), tokens, lengths)
        probs = torch.softmax(logits.float(), dim=-1)  # ranked in float32 at any precision
        values, indices = probs.topk(min(top_k, len(self.answers)), dim=-1)
        return [[(self.answers[i], float(p)) for p, i in zip(pv.tolist(), iv.tolist())] for pv, iv in zip(values, indices)]

    def ask(self, image: ImageInput, question: str, top_k: int = 5) -> list[tuple[str, float]]:
        """Top-k answers with probabilities for one question about one image."""
        self.question_ids(question)  # a bad question fails before the image is encoded
        return self.answer(self.features([image]), [question], top_k)[0]
