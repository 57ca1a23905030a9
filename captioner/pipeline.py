"""The entry points: ``Captioner.from_pretrained().caption(image)``, and ``VQAPredictor`` for answers alone.

Both are pipelines in the Hugging Face sense: ``preprocess`` turns images into encoder features (at the chosen
precision and runtime: :mod:`captioner.runtime`), ``forward`` runs the model, ``postprocess`` turns its outputs into
text. Keyword arguments are routed once, into a ``DecodeConfig`` (:meth:`DecodeConfig.override`); weights come from
the one loader (:mod:`captioner.pretrained`); images are read in batches by :func:`captioner.features.image_batches`."""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from .answers import answer_index
from .choices import SHIPPED, AnswerWords, ChoiceWeights, WordModel, check_choices, choice_probabilities, parse_choices
from .concepts import Concepts, concepts_beside
from .confidence import YES_NO, caption_confidence, doubted, is_sure
from .decoding import DecodeConfig, Hypothesis, decode
from .encoder import ImageEncoder, build_encoder
from .features import encode_images, image_batches
from .images import ImageInput, aspect_warning, load_image
from .look import look_all
from .options import TOP_ANSWERS
from .outputs import Answer, Caption
from .precision import Precision
from .pretrained import Weights, load_pretrained, load_vqa
from .runtime import ExportedEncoder, Runtime, load_runtime, resolve_runtime
from .vocab import Vocabulary, detokenize, pad_ids, tokenize_words

T = TypeVar("T")


class Pipeline:
    """What captioning and answering share: an image encoder, the runtime and precision it runs at (``runtime``:
    :class:`captioner.runtime.Runtime`), and ``preprocess``."""

    def __init__(
        self,
        encoder: ImageEncoder | ExportedEncoder,
        precision: str | Precision = "auto",
        runtime: str | Runtime = "auto",
    ):
        if isinstance(encoder, ExportedEncoder):  # already on its runtime: shared by a Captioner and its VQA model
            if not isinstance(runtime, Runtime) or runtime.name == "torch":
                raise ValueError("an exported encoder comes with the Runtime it was loaded on")
            self.encoder, self.runtime = encoder, runtime
        else:  # ValueError (one line) for a runtime or precision this machine cannot run
            self.encoder, self.runtime = load_runtime(encoder, resolve_runtime(runtime, precision))

    @property
    def precision(self) -> str:
        """The precision the encoder runs at: ``fp32``, ``bf16`` or ``fp16`` (``auto`` resolved; see ``runtime``)."""
        return self.runtime.precision.name

    @property
    def image_size(self) -> int:
        return self.encoder.preprocessing.image_size

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Encoder region features ``(N, R, feature_dim)``, float32 at any precision; BadImageError (one line)
        for an unreadable image."""
        with self.runtime.autocast():
            return encode_images(self.encoder, images).float()


# ---------------------------------------------------------------- captions


class Captioner(Pipeline):
    """Captions images (and answers questions, when VQA weights are present)."""

    def __init__(
        self,
        decoder,
        vocab: Vocabulary,
        encoder: ImageEncoder | ExportedEncoder,
        decoding: DecodeConfig | None = None,
        vqa: VQAPredictor | None = None,
        precision: str | Precision = "auto",
        not_sure_below: float | None = None,
        cells: dict[str, list[dict]] | None = None,
        runtime: str | Runtime = "auto",
    ):
        super().__init__(encoder, precision, runtime)
        self.decoder = decoder.eval()
        self.vocab = vocab
        self.decoding = decoding or DecodeConfig(max_length=vocab.max_length)
        self.vqa = vqa
        self.not_sure_below = not_sure_below  # the weights' caption threshold (captioner.confidence), if any
        self.cells = cells or {}  # the cell atlas of the weights (captioner.lecture.atlas), by state; {}: none shipped

    @classmethod
    def from_pretrained(
        cls,
        weights: str | Path | Weights | None = None,
        encoder_weights: str | None = None,
        load_vqa: bool = True,
        precision: str | Precision = "auto",
        runtime: str | Runtime = "auto",
    ) -> Captioner:
        """Load a weights entry (or its name; default: the default entry) or a weights folder; offline, on the CPU.

        An entry brings its preprocessing and decoding defaults; a folder, its ``config.json``'s (see
        :mod:`captioner.pretrained`). VQA weights are the default VQA entry's, or for a folder its ``vqa/``.
        ``precision`` is one of :data:`captioner.precision.PRECISIONS`; ``auto`` picks the fastest this CPU runs
        natively, and an explicit one it cannot run is a ValueError. ``runtime`` is one of
        :data:`captioner.runtime.RUNTIMES`: where the encoder runs (``auto``: see :mod:`captioner.runtime`).
        """
        runtimes = resolve_runtime(runtime, precision)  # before anything is loaded
        caption, answers = load_pretrained(weights, with_vqa=load_vqa)
        encoder, chosen = load_runtime(
            build_encoder(caption.encoder, encoder_weights, tuned=caption.tuned, preprocessing=caption.preprocessing),
            runtimes,
        )
        vqa = None
        if answers is not None:  # it shares the encoder when it was trained on the same one
            same = not caption.tuned and answers.encoder == encoder.spec.name
            same = same and (answers.preprocessing or encoder.spec.preprocessing) == encoder.preprocessing
            vqa_encoder, vqa_runtime = encoder, chosen
            if not same:
                built = build_encoder(answers.encoder, encoder_weights, preprocessing=answers.preprocessing)
                vqa_encoder, vqa_runtime = load_runtime(built, runtimes[runtimes.index(chosen) :])
            words = WordModel(caption.model, caption.vocab) if same else None  # scores candidates from its features
            vqa = VQAPredictor(
                answers.model,
                answers.vocab,
                answers.answers,
                vqa_encoder,
                not_sure_below=answers.confidence.get("answer"),
                yes_no_below=answers.confidence.get("yes_no"),
                words=words,
                choice_weights=answers.choices,
                runtime=vqa_runtime,
                concepts=concepts_beside(answers.path, answers.encoder),
            )
        return cls(
            caption.model,
            caption.vocab,
            encoder,
            caption.decoding,
            vqa,
            not_sure_below=caption.confidence.get("caption"),
            cells=caption.cells,
            runtime=chosen,
        )

    def forward(
        self, features: torch.Tensor, config: DecodeConfig | None = None, keys: Sequence[str] | None = None
    ) -> list[list[Hypothesis]]:
        """Decode features ``(N, R, feature_dim)``, in float32 at any precision (see :mod:`captioner.precision`)."""
        return decode(self.decoder, features, config or self.decoding, keys)

    def postprocess(self, hyps: list[list[Hypothesis]]) -> list[list[Caption]]:
        return [[self._caption(h) for h in per_image] for per_image in hyps]

    def _caption(self, h: Hypothesis) -> Caption:
        words = [self.vocab.words[t] for t in h.tokens]
        confidence = caption_confidence(h.log_prob, len(words))
        return Caption(
            detokenize(words),
            words,
            [math.exp(lp) for lp in h.token_log_probs[: len(words)]],
            h.log_prob,
            h.score,
            h.finished,
            h.tokens,
            confidence,
            is_sure(confidence, self.not_sure_below),
        )

    def caption_features(
        self, features: torch.Tensor, config: DecodeConfig | None = None, keys: Sequence[str] | None = None
    ) -> list[list[Caption]]:
        """``config.n_best`` captions per image of a batch of features, best first. Seeded sampling seeds each
        image from the seed and its key (see :func:`decoding.decode`)."""
        return self.postprocess(self.forward(features, config, keys))

    def caption_images(
        self, images: Sequence[ImageInput], config: DecodeConfig | None = None, keys: Sequence[str] | None = None
    ) -> list[list[Caption]]:
        """Caption a batch of images; ``keys`` default to the file names of paths (see ``caption_features``). An
        image's captions are not sure, and say why, when it is too wide or too tall (:func:`aspect_warning`)."""
        if keys is None and all(isinstance(image, (str, Path)) for image in images):
            keys = [Path(image).name for image in images]
        images = [load_image(image, self.image_size) for image in images]  # each once: its shape warns too
        captions = self.caption_features(self.preprocess(images), config, keys)
        return [doubted(per, aspect_warning(image)) for per, image in zip(captions, images)]

    def caption(
        self, images: ImageInput | Sequence[ImageInput], details: bool = False, **decoding
    ) -> str | list[str] | Caption | list[Caption] | list:
        """The best caption of an image: a path, a PIL image or pixels (a numpy array ``(H, W[, C])``); for a list
        of images (or an ``(N, H, W, C)`` array), a list of them. Keywords override decoding settings, e.g.
        ``method="sample", temperature=0.8``, ``beam_size=5`` or ``n_best=3`` (then each image's n best, as a
        list). ``details=True`` gives :class:`Caption` s instead of text: each word's probability, the caption's
        confidence, and whether it is ``sure`` (see :mod:`captioner.confidence`)."""
        config = self.decoding.override(**decoding)
        single = not isinstance(images, (list, tuple)) and not (isinstance(images, np.ndarray) and images.ndim == 4)
        batch = [images] if single else list(images)
        results = [per if details else [c.text for c in per] for per in self.caption_images(batch, config)]
        results = results if config.n_best > 1 else [per[0] for per in results]
        return results[0] if single else results

    def caption_files(
        self,
        items: Sequence[T],
        config: DecodeConfig | None = None,
        batch_size: int = 32,
        path_of: Callable[[T], Path] = lambda item: item,
        progress: bool = True,
    ) -> Iterator[tuple[T, list[Caption] | None, str | None]]:
        """(item, its captions, None) for each readable image file of ``items``, in order, and (item, None, the
        reason) for the others; sampling with a seed keys each image by its file name. An image's captions are not
        sure, and say why, when it is too wide or too tall (:func:`aspect_warning`).

        Three stages overlap, each in a thread of its own: reading batch i + 2, encoding batch i + 1 and decoding
        batch i. The encoder and the decoder then share the cores instead of taking turns (a runtime's threads
        and PyTorch's, waiting on each other, ran 4x slower on a busy 2-core CPU: docs/experiments.md). Each
        stage computes exactly what it would alone, so the captions are the same."""

        def finish(
            good: list[T], bad: list[tuple[T, str]], features: Future | None, warnings: list[str | None]
        ) -> Iterator[tuple[T, list[Caption] | None, str | None]]:
            yield from ((item, None, reason) for item, reason in bad)
            if features is not None:
                keys = [Path(path_of(item)).name for item in good]
                captions = self.caption_features(features.result(), config, keys)
                yield from ((item, doubted(nbest, w), None) for item, nbest, w in zip(good, captions, warnings))

        with ThreadPoolExecutor(max_workers=1) as encoder:
            pending = None  # the batch being encoded: (readable items, unreadable ones, its features to come)
            for good, images, bad in image_batches(items, batch_size, self.image_size, path_of, progress):
                warnings = [aspect_warning(image) for image in images]
                upcoming = (good, bad, encoder.submit(self.preprocess, images) if images else None, warnings)
                if pending is not None:
                    yield from finish(*pending)
                pending = upcoming
            if pending is not None:
                yield from finish(*pending)

    def ask(
        self,
        image: ImageInput,
        question: str,
        top_k: int = TOP_ANSWERS,
        choices: Sequence[str] | str | None = None,
        details: bool = False,
    ) -> list[tuple[str, float]] | list:
        """Top-k answers with probabilities for a question about the image; with ``choices`` (a list, or one
        string separated by ``|``: :mod:`captioner.choices`), every choice with its probability, best first.
        ``details=True`` gives :class:`Answer` s, which also say whether each answer is ``sure``."""
        if self.vqa is None:
            raise RuntimeError("no VQA weights loaded (expected weights/vqa/)")
        return self.vqa.ask(image, question, top_k, choices, details)  # the VQA model's encoder: shared, or its own


# ---------------------------------------------------------------- answers


class VQAPredictor(Pipeline):
    """A trained VQA model with its vocabularies and encoder: images and questions in, answers out."""

    def __init__(
        self,
        model,
        vocab: Vocabulary,
        answers: list[str],
        encoder: ImageEncoder | ExportedEncoder,
        precision: str | Precision = "auto",
        not_sure_below: float | None = None,
        words: WordModel | None = None,
        yes_no_below: float | None = None,
        choice_weights: ChoiceWeights | None = None,
        runtime: str | Runtime = "auto",
        concepts: Concepts | None = None,
    ):
        super().__init__(encoder, precision, runtime)
        self.model = model.eval()
        self.concepts = concepts  # the concept detectors that answer existence and colour questions (captioner.look)
        needed = model.config.concept_dim
        if needed and (concepts is None or len(concepts.vocab.words) != needed):
            raise ValueError(f"these VQA weights read {needed} concepts: expected their concept weights in concepts/")
        self.vocab = vocab
        self.answers = answers
        self.not_sure_below = not_sure_below  # the weights' answer threshold (captioner.confidence), if any
        self.yes_no_below = yes_no_below  # ... and their stricter one for a yes or a no, if any
        self.words = words  # the caption decoder, for multiple-choice candidates outside ``answers``
        self.choice_weights = choice_weights or SHIPPED  # the rule fitted for these weights, else the shipped ones
        self.answer_index = answer_index(answers)
        self.answer_words = AnswerWords(self.answer_index)  # which answers a multiple-choice candidate holds

    def sure(self, probability: float, answer: str | None = None) -> bool | None:
        """Whether a top answer of this probability is "sure" by the weights' calibrated threshold (None: the weights
        record none). Only the top answer is marked: the threshold was calibrated on top answers. A "yes" or "no"
        has its own threshold when the weights record one: a yes/no is right half the time by chance, so the
        probability at which it becomes trustworthy is higher (:mod:`captioner.confidence`)."""
        if answer in YES_NO and self.yes_no_below is not None:
            return is_sure(probability, self.yes_no_below)
        return is_sure(probability, self.not_sure_below)

    @classmethod
    def from_pretrained(
        cls,
        weights: str | Path | Weights | None = None,
        encoder_weights: str | None = None,
        precision: str | Precision = "auto",
        words: bool = False,
        runtime: str | Runtime = "auto",
    ) -> VQAPredictor:
        """Load a VQA weights entry (or its name; default: the default entry) or a folder holding ``config.json``
        or ``vqa/config.json``. With ``words``, the caption weights that go with them too (an entry's, or
        ``caption/`` beside ``vqa/``), for multiple choice (see :meth:`choose`). ``precision`` and ``runtime``: as
        for :meth:`Captioner.from_pretrained`."""
        if words:
            try:
                vqa = Captioner.from_pretrained(weights, encoder_weights, precision=precision, runtime=runtime).vqa
            except (FileNotFoundError, ValueError) as e:  # a folder of VQA weights alone
                if "caption weights" not in str(e):
                    raise
                raise ValueError(
                    f"multiple choice also needs caption weights (they score the choices outside the "
                    f"answer list): give a folder holding caption/ beside vqa/, not {weights}"
                ) from None
            if vqa is None or vqa.words is None:
                raise ValueError(
                    f"multiple choice needs VQA and caption weights on one encoder in {weights or 'the default entry'}"
                )
            return vqa
        runtimes = resolve_runtime(runtime, precision)  # before anything is loaded
        answers = load_vqa(weights)
        encoder, chosen = load_runtime(
            build_encoder(answers.encoder, encoder_weights, preprocessing=answers.preprocessing), runtimes
        )
        return cls(
            answers.model,
            answers.vocab,
            answers.answers,
            encoder,
            not_sure_below=answers.confidence.get("answer"),
            yes_no_below=answers.confidence.get("yes_no"),
            choice_weights=answers.choices,
            runtime=chosen,
            concepts=concepts_beside(answers.path, answers.encoder),
        )

    def question_ids(self, question: str) -> list[int]:
        """Word ids of a question; ValueError (one line) when it is empty or longer than the model reads."""
        words = tokenize_words(question)
        if not words:
            raise ValueError("the question is empty (it has no words)")
        if len(words) > self.vocab.max_length:
            raise ValueError(f"the question is too long ({len(words)} words; at most {self.vocab.max_length})")
        return self.vocab.encode(question, add_markers=False)

    def unknown_words(self, question: str) -> list[str]:
        """Words of ``question`` outside the vocabulary; the model reads them as ``<unk>``."""
        return [w for w in tokenize_words(question) if w not in self.vocab.index]

    @torch.inference_mode()
    def forward(self, features: torch.Tensor, questions: Sequence[str], log: bool = False) -> torch.Tensor:
        """Answer probabilities ``(N, answers)`` (``log``: their logarithms) for (features row, question) pairs;
        computed in float32 from the logits at any precision."""
        tokens, lengths = pad_ids([self.question_ids(q) for q in questions])
        concepts = self.concepts.detect(features)[0] if self.model.config.concept_dim else None
        with self.runtime.autocast():
            logits = self.model(features.float(), tokens, lengths, concepts)
        return (torch.log_softmax if log else torch.softmax)(logits.float(), dim=-1)

    def postprocess(self, probs: torch.Tensor, top_k: int) -> list[list[tuple[str, float]]]:
        values, indices = probs.topk(min(top_k, len(self.answers)), dim=-1)
        return [
            [(self.answers[i], float(p)) for p, i in zip(pv.tolist(), iv.tolist())] for pv, iv in zip(values, indices)
        ]

    def answer(
        self, features: torch.Tensor, questions: list[str], top_k: int = TOP_ANSWERS
    ) -> list[list[tuple[str, float]]]:
        """The ``top_k`` answers and their probabilities for each (image features row, question) pair: the concept
        detectors' for existence and colour questions about objects they know (:mod:`captioner.look`)."""
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        rows = self.postprocess(self.forward(features, questions), top_k)
        looked = look_all(self.concepts, features, questions, self.words) if self.concepts else [None] * len(rows)
        return [seen.answers[:top_k] if seen else row for row, seen in zip(rows, looked)]

    def choose(
        self, features: torch.Tensor, questions: Sequence[str], choices: Sequence[Sequence[str]]
    ) -> list[list[tuple[str, float]]]:
        """For each question about one image (``features`` ``(1, R, feature_dim)``) and its checked choices, every
        choice with its probability, best first (:func:`captioner.choices.choice_probabilities`)."""
        if self.words is None:
            raise ValueError("multiple choice needs the caption weights too (caption/ beside vqa/, on one encoder)")
        log_probs = self.forward(features.expand(len(questions), *features.shape[1:]), questions, log=True)
        words = self.words.scores(features)[0]  # (vocab,): the image's, the same for every question
        seen = self.seen(features)
        return [
            choice_probabilities(c, lp, self.answer_words, words, self.words.vocab, self.choice_weights, seen)
            for c, lp in zip(choices, log_probs)
        ]

    def seen(self, features: torch.Tensor) -> Callable[[str], tuple[float, float]] | None:
        """How multiple choice reads one image's concepts (``features`` ``(1, R, D)``); None without detectors."""
        return self.concepts.seen(features).features if self.concepts else None

    def ask(
        self,
        image: ImageInput,
        question: str,
        top_k: int = TOP_ANSWERS,
        choices: Sequence[str] | str | None = None,
        details: bool = False,
    ) -> list[tuple[str, float]] | list:
        """Top-k answers with probabilities for one question about one image; with ``choices`` (see
        :meth:`Captioner.ask`), every choice with its probability, best first; ``details=True``: as
        :class:`Answer` s (multiple choice carries no "sure": the threshold was calibrated on top answers)."""
        self.question_ids(question)  # a bad question fails before the image is encoded
        if choices is not None:
            choices = parse_choices(choices) if isinstance(choices, str) else check_choices(choices)
            answers = self.choose(self.preprocess([image]), [question], [choices])[0]
            return [Answer(a, p, None) for a, p in answers] if details else answers
        answers = self.answer(self.preprocess([image]), [question], top_k)[0]
        marked = [Answer(a, p, self.sure(p, a) if i == 0 else None) for i, (a, p) in enumerate(answers)]  # the top only
        return marked if details else answers  # (see sure)

    def ask_each(
        self,
        image: ImageInput,
        questions: Iterable[str],
        top_k: int = TOP_ANSWERS,
        choices: Sequence[str] | None = None,
    ) -> Iterator[tuple[str, list[tuple[str, float]] | None, str | None]]:
        """(question, its top-k answers, None), or (question, None, the one-line reason it cannot be answered), for
        each question in turn as ``questions`` yields it (a list, or the lines of stdin: a conversation), the image
        read and encoded once, before the first; BadImageError (one line) when it cannot be read. With ``choices``
        (checked), each question's answers are those choices with their probabilities."""
        features = self.preprocess([image])
        for question in questions:
            try:
                answers = (
                    self.choose(features, [question], [choices])
                    if choices is not None
                    else self.answer(features, [question], top_k)
                )
                yield question, answers[0], None
            except ValueError as e:
                yield question, None, str(e)
