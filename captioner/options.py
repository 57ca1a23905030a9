"""The options every face offers before a model loads: how to decode, at which precision, and the shipped
caption weights' own decoding.

No torch here: ``captioner --help`` and ``captioner caption --help`` state these defaults in a fraction of a
second, and :mod:`captioner.decoding`, :mod:`captioner.precision` and :mod:`captioner.pretrained` read them from
here, so each is still written once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .settings import check, setting

MAX_CAPTION_WORDS = 20  # the longest caption a vocabulary encodes, unless built with another max_length
METHODS = ("greedy", "sample", "beam")
MAX_BEAM = 50  # beam search cost grows with the beam; wider beams do not caption better
MAX_DECODE_WORDS = 100  # --max-length: the shipped models were trained on captions of at most MAX_CAPTION_WORDS
MIN_SAMPLING = 0.01  # the floor of temperature and top-p: below it sampling is greedy decoding in all but name

# The shipped caption entries' decoding (captioner.pretrained): the LSTM's dev-tuned defaults.
CAPTION_DECODING = {"method": "beam", "beam_size": 3, "length_penalty": 1.0, "no_repeat_ngram": 2}

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_HELP = (
    "numeric precision: fp32; bf16 or fp16 autocast where the hardware runs it natively; auto: the "
    "fastest native one (bf16 on a CPU with AVX512-BF16, AMX or ARM BF16, else fp32; on a GPU bf16, "
    "else fp16)"
)


# Where the image encoder runs (captioner.runtime)
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
CPU_RUNTIMES = ("openvino", "onnxruntime")  # those that run an ONNX export
AUTO_ORDER = ("onnxruntime", "openvino")  # auto's preference among the installed ones: fastest first, as measured
FAST_EXTRA = 'pip install "captioner[fast]"'
INSTALL = {"onnxruntime": FAST_EXTRA, "openvino": 'pip install "captioner[openvino]"'}  # how to get each one
RUNTIME_HELP = (
    "where the image encoder runs: torch (PyTorch), onnxruntime or openvino (float32 CPU runtimes: "
    f"{INSTALL['onnxruntime']}, {INSTALL['openvino']}); auto: PyTorch on a GPU, with --precision fp32 "
    f"or where bf16 is native, else the first installed of {', '.join(AUTO_ORDER)}, else PyTorch"
)


@dataclass
class DecodeConfig:
    """How to decode: the one place for every decoding default, range and help text (the CLI's options, the
    app's controls and its API checks are all made from these fields). Weights carry their own defaults for
    some of them (see :mod:`captioner.pretrained`), applied with :meth:`override`."""

    method: str = setting("beam", "beam search, greedy decoding or sampling", choices=METHODS)
    beam_size: int = setting(3, "beam size", low=1, high=MAX_BEAM, flag="--beam", metavar="N")
    n_best: int = setting(
        1, "captions per image (at most the beam size; with sampling, independent samples)", low=1, high=MAX_BEAM
    )
    temperature: float = setting(1.0, "sampling temperature", low=MIN_SAMPLING, high=100.0)
    top_k: int = setting(0, "sample only from the K most likely words (0: all)", low=0, high=1_000_000)
    top_p: float = setting(
        1.0, "sample only from the smallest word set with this probability mass (1: all)", low=MIN_SAMPLING, high=1.0
    )
    length_penalty: float = setting(0.0, "rank beams by log-prob / length ** this", low=0.0, high=10.0)
    min_length: int = setting(1, "at least this many words", low=0, high=MAX_DECODE_WORDS)
    max_length: int = setting(MAX_CAPTION_WORDS, "at most this many words", low=1, high=MAX_DECODE_WORDS)
    no_repeat_ngram: int = setting(0, "never repeat an n-gram of this size (0: off)", low=0, high=MAX_DECODE_WORDS)
    seed: int | None = setting(
        None,
        "random seed for sampling; each image is seeded from it and its key (file "
        "name), so it gets the same captions alone or among others (none: a fresh draw)",
        low=-(2**63),
        high=2**63 - 1,
    )

    def __post_init__(self) -> None:
        check(self)
        if self.method == "beam" and self.n_best > self.beam_size:
            raise ValueError(f"n_best ({self.n_best}) cannot exceed beam_size ({self.beam_size})")
        if self.method == "greedy" and self.n_best > 1:
            raise ValueError("greedy decoding gives one caption; use beam search or sampling for n_best > 1")
        if self.max_length < self.min_length:
            raise ValueError(f"max_length ({self.max_length}) must be at least min_length ({self.min_length})")

    def override(self, **changes) -> DecodeConfig:
        """A copy with ``changes`` (``None`` values ignored): how every face applies a user's settings to the
        weights' defaults, with the same checks and messages everywhere."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


# Questions (captioner.pipeline, captioner.choices)
TOP_ANSWERS = 5  # answers given per question unless asked for another number
SEPARATOR, ESCAPE = "|", "\\"


@dataclass
class ChoiceLimits:
    """What one question's candidates may be; every face (CLI, ``ask --batch``, Python, the app) checks these."""

    max_choices: int = setting(100, "most candidate answers one question may offer", low=2, high=10_000)
    max_choice_chars: int = setting(200, "most characters in one candidate answer", low=1, high=10_000)

    def __post_init__(self) -> None:
        check(self)


CHOICE_LIMITS = ChoiceLimits()
