"""The one obvious entry point: ``Captioner.from_pretrained().caption(image)``.

It ties the stages together (image -> encoder features -> decoder tokens -> text) and loads
everything from a weights entry (:mod:`captioner.pretrained`) or a weights folder: ``caption/`` (and
``vqa/`` for questions), each holding ``model.safetensors``, ``config.json`` and ``vocab.json``.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from .checkpoint import CONFIG_FILE, MODEL_FILE, config_errors, load_checkpoint, load_weights, split_encoder_weights
from .decoding import DecodeConfig, Hypothesis, decode
from .encoder import ImageEncoder, build_encoder
from .features import batched, encode_images
from .images import BadImageError, ImageInput, load_image
from .model import CaptionDecoder, DecoderConfig
from .precision import Precision, resolve_precision
from .pretrained import Weights, folder_preprocessing, resolve_weights
from .vocab import Vocabulary, detokenize


@dataclass
class Caption:
    """A decoded caption with the model's confidence in each word."""

    text: str
    words: list[str]
    word_probs: list[float]  # probability of each word when it was chosen
    log_prob: float  # total, ``<end>`` included
    score: float  # what the decoder ranked by (length-penalised log_prob)
    finished: bool  # False when decoding hit max_length before ``<end>``
    tokens: list[int]


def _to_caption(h: Hypothesis, vocab: Vocabulary) -> Caption:
    words = [vocab.words[t] for t in h.tokens]
    return Caption(detokenize(words), words, [math.exp(lp) for lp in h.token_log_probs[: len(words)]],
                   h.log_prob, h.score, h.finished, h.tokens)


def decode_config(defaults: DecodeConfig | None = None, **overrides) -> DecodeConfig:
    """A DecodeConfig from defaults plus keyword overrides (``None`` values are ignored)."""
    base = {f.name: getattr(defaults, f.name) for f in fields(DecodeConfig)} if defaults else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return DecodeConfig(**base)


class Captioner:
    """Captions images (and answers questions, when VQA weights are present)."""

    def __init__(self, decoder: CaptionDecoder, vocab: Vocabulary, encoder: ImageEncoder,
                 decoding: DecodeConfig | None = None, vqa=None, precision: str | Precision = "auto"):
        self.decoder = decoder.eval()
        self.vocab = vocab
        self.encoder = encoder
        self.decoding = decoding or DecodeConfig(max_length=vocab.max_length)
        self.vqa = vqa
        self.runtime = resolve_precision(precision)  # ValueError (one line) for one this CPU cannot run

    @property
    def precision(self) -> str:
        """The precision inference runs at: ``fp32``, ``bf16`` or ``fp16`` (``auto`` resolved; see ``runtime``)."""
        return self.runtime.name

    @classmethod
    def from_pretrained(cls, weights: str | Path | Weights | None = None, encoder_weights: str | None = None,
                        load_vqa: bool = True, precision: str | Precision = "auto") -> "Captioner":
        """Load a weights entry (or its name; default: the default entry) or a weights folder; offline, on the CPU.

        An entry brings its preprocessing and decoding defaults; a folder, its ``config.json``'s (see
        :mod:`captioner.pretrained`). VQA weights are the default VQA entry's, or for a folder its ``vqa/``.
        ``precision`` is one of :data:`captioner.precision.PRECISIONS`; ``auto`` picks the fastest this CPU runs
        natively, and an explicit one it cannot run is a ValueError.
        """
        runtime = resolve_precision(precision)  # before anything is loaded
        path, entry = resolve_weights(weights, "caption")
        tensors, config = load_checkpoint(path)
        decoder_weights, tuned = split_encoder_weights(tensors)  # tuned: fine-tuned encoder blocks, if any
        vocab = Vocabulary.load(path / "vocab.json")
        with config_errors(path / CONFIG_FILE):
            decoder = CaptionDecoder(DecoderConfig(**config["decoder"]))
            settings = entry.decoding if entry else config.get("decoding", {})
            decoding = decode_config(DecodeConfig(max_length=vocab.max_length), **settings)
            encoder_name = config["encoder"]
            preprocessing = entry.preprocessing if entry else folder_preprocessing(config)
            if decoder.config.vocab_size != len(vocab):
                raise ValueError(f"vocab_size {decoder.config.vocab_size}, but vocab.json has {len(vocab)} words")
        load_weights(decoder, decoder_weights, path / MODEL_FILE)
        encoder = build_encoder(encoder_name, encoder_weights, tuned=tuned, preprocessing=preprocessing)
        vqa = None
        if load_vqa:
            from .vqa import VQAPredictor

            try:
                vqa_path, vqa_entry = resolve_weights(None if entry else weights, "vqa")
            except FileNotFoundError:
                vqa_path = None
            if vqa_path is not None and vqa_path != path:
                # The VQA model was trained on the pretrained encoder: it shares it unless captioning fine-tuned it.
                vqa = VQAPredictor.from_pretrained(vqa_entry or vqa_path, None if tuned else encoder, encoder_weights,
                                                   runtime)
        return cls(decoder, vocab, encoder, decoding, vqa, runtime)

    def features(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Encoder region features ``(N, R, feature_dim)``, float32 at any precision; raises BadImageError for an
        unreadable image."""
        with self.runtime.autocast():
            return encode_images(self.encoder, images).float()

    def caption_features(self, features: torch.Tensor, config: DecodeConfig | None = None,
                         keys: Sequence[str] | None = None) -> list[list[Caption]]:
        """Decode a batch of features; ``config.n_best`` captions per image, best first. Seeded sampling
        seeds each image from the seed and its key (see :func:`decoding.decode`)."""
        hyps = decode(self.decoder, features, config or self.decoding, keys)  # float32 at any precision
        return [[_to_caption(h, self.vocab) for h in per_image] for per_image in hyps]

    def caption_images(self, images: Sequence[ImageInput], config: DecodeConfig | None = None,
                       keys: Sequence[str] | None = None) -> list[list[Caption]]:
        """Caption a batch of images; ``keys`` default to the file names of paths (see ``caption_features``)."""
        if keys is None and all(isinstance(image, (str, Path)) for image in images):
            keys = [Path(image).name for image in images]
        return self.caption_features(self.features(images), config, keys)

    def caption(self, image: ImageInput, **decoding) -> str:
        """The best caption of one image (path or PIL image). Keywords override decoding settings,
        e.g. ``method="sample", temperature=0.8`` or ``beam_size=5``."""
        return self.caption_images([image], decode_config(self.decoding, **decoding))[0][0].text

    def ask(self, image: ImageInput, question: str, top_k: int = 5) -> list[tuple[str, float]]:
        """Top-k answers with probabilities for a question about the image."""
        if self.vqa is None:
            raise RuntimeError("no VQA weights loaded (expected weights/vqa/)")
        return self.vqa.ask(image, question, top_k)  # the VQA model's encoder: shared, or its own if it differs


def caption_dataset(model: Captioner, items: Sequence, config: DecodeConfig | None = None,
                    batch_size: int = 32) -> dict:
    """``{image_id: best caption}`` for dataset items; unreadable images are reported on stderr and skipped."""
    size = model.encoder.preprocessing.image_size
    results = {}
    with tqdm(total=len(items), desc="captioning", unit="img", file=sys.stderr) as bar:
        for chunk in batched(items, batch_size):
            good, images = [], []
            for item in chunk:
                try:
                    images.append(load_image(item.path, size_hint=size))
                    good.append(item)
                except BadImageError as e:
                    tqdm.write(f"captioner: skipped {e}", file=sys.stderr)
            for item, nbest in zip(good, model.caption_images(images, config) if images else []):
                results[item.image_id] = nbest[0].text
            bar.update(len(chunk))
    return results
