"""Visual question answering: the "deeper LSTM Q + norm I" baseline of Antol et al. (2015).

The question is tokenized and encoded to ids by the same :class:`Vocabulary` code as captions
(without ``<start>``/``<end>``), embedded, and read by an LSTM of 1 or 2 layers (or another cell of
:mod:`captioner.cells`); the final hidden and cell states of every layer (the cell's ``summary`` of its final
state), projected, are the question vector. The image vector ``v`` is
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

import torch
from torch import nn

from . import cells
from .settings import MAX_DIM, MAX_LAYERS, check, setting
from .vocab import Vocabulary

FUSIONS = ("product", "concat")
ANSWERS_FILE = "answers.json"


@dataclass
class VQAConfig:
    """Shape of the VQA model; ``use_image=False`` is the question-only ablation. These settings are the training
    settings too (``train_vqa.VQATrainConfig`` takes them from here: default, range and help)."""

    vocab_size: int  # these four the data decides
    num_answers: int
    feature_dim: int
    concept_dim: int = 0  # the concept detectors' probabilities read beside the image (captioner.concepts); 0: none
    embed_dim: int = setting(300, "size of the word embeddings", low=1, high=MAX_DIM)
    hidden_dim: int = setting(256, "size of the question encoder's hidden state", low=1, high=MAX_DIM)
    num_layers: int = setting(1, "stacked recurrent layers of the question encoder", low=1, high=MAX_LAYERS)
    cell: str = setting(
        "lstm",
        "the question encoder's recurrent cell: lstm, rnn (a vanilla tanh RNN) or ssm (a selective state-space model)",
        choices=tuple(cells.CELLS),
    )
    fused_dim: int = setting(512, "size of the question and image vectors", low=1, high=MAX_DIM)
    mlp_dim: int = setting(512, "hidden size of the answer classifier", low=1, high=MAX_DIM)
    fusion: str = setting("concat", "how the two vectors combine: concat, or product (element-wise)", choices=FUSIONS)
    use_image: bool = setting(True, "feed the image (--no-use-image: the question-only baseline)")
    dropout: float = setting(0.5, "dropout probability", low=0, below=1)

    def __post_init__(self) -> None:
        check(self)
        if isinstance(self.concept_dim, bool) or not isinstance(self.concept_dim, int) or self.concept_dim < 0:
            raise ValueError(f"concept_dim must be a whole number, 0 or more, not {self.concept_dim!r}")


class VQAModel(nn.Module):
    """Answer logits from image features and question token ids."""

    def __init__(self, config: VQAConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=Vocabulary.pad_id)
        self.rnn = cells.build_cell(c.cell, c.embed_dim, c.hidden_dim, c.num_layers, c.dropout)
        # the final state as one vector: every layer's h (and c), or the SSM's channels read out
        self.question_proj = nn.Sequential(
            nn.Dropout(c.dropout), nn.Linear(self.rnn.summary_size, c.fused_dim), nn.Tanh()
        )
        if c.use_image:
            self.image_proj = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.feature_dim, c.fused_dim), nn.Tanh())
        if c.use_image and c.concept_dim:  # what the captions taught, as Wu et al. (2016) feed their attributes
            self.concept_proj = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.concept_dim, c.fused_dim), nn.Tanh())
        fused = 2 * c.fused_dim if c.use_image and c.fusion == "concat" else c.fused_dim
        fused += c.fused_dim if c.use_image and c.concept_dim else 0
        self.classifier = nn.Sequential(
            nn.Dropout(c.dropout),
            nn.Linear(fused, c.mlp_dim),
            nn.Tanh(),
            nn.Dropout(c.dropout),
            nn.Linear(c.mlp_dim, c.num_answers),
        )

    def encode_question(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Padded ids ``(N, T)`` and word counts ``(N,)`` to question vectors ``(N, fused_dim)``.

        The LSTM runs in float32 under any autocast: oneDNN has no reduced-precision LSTM on every CPU, and
        a question costs little next to the image."""
        x = torch.tanh(self.embed(tokens))  # (N, T, embed_dim)
        with torch.autocast(tokens.device.type, enabled=False):
            _, state = self.rnn.sequence(x, lengths=lengths)  # (h, c), (h,) or (ssm, conv), each (layers, N, ...)
        return self.question_proj(self.rnn.summary(state))  # (N, summary_size) -> (N, fused_dim)

    def encode_image(self, features: torch.Tensor) -> torch.Tensor:
        """CNN features, pooled ``(N, feature_dim)`` or regions ``(N, R, feature_dim)`` (averaged),
        L2-normalised, to image vectors ``(N, fused_dim)``.

        The unit vector is scaled by sqrt(feature_dim), to components of unit mean square: at
        norm 1 the projection's outputs start near 0 and a product with them would hide the question.
        """
        if features.dim() == 3:
            features = features.mean(1)  # (N, feature_dim)
        v = nn.functional.normalize(features, dim=-1) * self.config.feature_dim**0.5  # (N, feature_dim)
        return self.image_proj(v)  # (N, fused_dim)

    def forward(
        self,
        features: torch.Tensor | None,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        concepts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Answer logits ``(N, num_answers)``; ``features`` is never read by a question-only model, ``concepts``
        (the detectors' probabilities, ``(N, concept_dim)``) only by one with ``concept_dim``."""
        q = self.encode_question(tokens, lengths)  # (N, fused_dim)
        if not self.config.use_image:
            return self.classifier(q)
        v = self.encode_image(features)  # (N, fused_dim)
        fused = q * v if self.config.fusion == "product" else torch.cat([q, v], dim=-1)  # (N, fused_dim or twice)
        if self.config.concept_dim:
            if concepts is None:
                raise ValueError("this VQA model reads concept probabilities beside the image: give them")
            fused = torch.cat([fused, self.concept_proj(concepts.float())], dim=-1)  # (N, ... + fused_dim)
        return self.classifier(fused)  # (N, num_answers)
