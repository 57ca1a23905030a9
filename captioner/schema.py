"""The schema of a weights folder: what each of its files must hold, checked before anything is built.

A weights folder (``--weights DIR``) is user input like any other, so :func:`captioner.pretrained.load_pretrained`
checks every file against this schema first, and a bad folder is a one-line ValueError naming the file and the
field, within a second, before a tensor is allocated:

- ``config.json``: ``task``, ``encoder`` (a known one), ``preprocessing`` (:class:`captioner.encoder.Preprocessing`
  checks it), the architecture (``decoder`` or ``model``: the ranges of :class:`captioner.model.DecoderConfig` and
  :class:`captioner.vqa.VQAConfig`), ``decoding`` (:class:`captioner.decoding.DecodeConfig`: the ranges the CLI
  enforces), an optional ``confidence`` (:data:`CONFIDENCE_KEYS`, each in [0, 1]) and, for VQA weights, an
  optional ``choices`` (the multiple-choice rule's weights: :class:`captioner.choices.ChoiceWeights`);
- ``vocab.json``: ``words``, a list of unique non-empty strings, and ``max_length`` (the range of ``--max-length``);
- ``answers.json``: a list of unique strings (the empty answer among them, as human answers have it);
- ``cells.json`` (optional, caption weights: :mod:`captioner.atlas`): an entry per cell of each state of the
  decoder, each with its label, what it tracks, its position correlation and selectivity, and its words;
- ``model.safetensors``: the names and shapes of the model the config describes (built on the meta device, so
  without memory), float dtypes, finite values within ±:data:`captioner.checkpoint.MAX_MAGNITUDE`
  (:func:`captioner.checkpoint.check_tensors`).

Each file is read once (:func:`captioner.checkpoint.read_json`: size and depth limits), and nothing is unpickled.
"""

from __future__ import annotations

from dataclasses import MISSING
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .cells import channels, state_kinds
from .charlm import CHARS_FORMAT, CharLMConfig, CharVocab
from .checkpoint import check_tensors, read_tensors
from .choices import ChoiceWeights
from .decoding import DecodeConfig
from .encoder import ENCODERS
from .io import config_errors, shorten
from .settings import check_value, checked, settings
from .vocab import Vocabulary

CONFIDENCE_KEYS = ("answer", "yes_no", "caption")  # the "not sure" thresholds weights may record (captioner.confidence)
ATLAS_FILE, ATLAS_FORMAT = "cells.json", "captioner cell atlas"  # the cell atlas (captioner.atlas)
TRACKS = ("position", "word")  # what an atlas says a cell tracks


def _quoted(value: Any) -> str:
    """A value as an error message quotes it: the start of its repr."""
    return shorten(repr(value))


def section(config: dict, name: str, required: bool = True) -> dict:
    """``config[name]``, a JSON object (an empty one when it is absent and not ``required``)."""
    if name not in config and not required:
        return {}
    value = config[name]  # KeyError: config_errors reports it as "missing 'name'"
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object, not {_quoted(value)}")
    return value


def strings(data: Any, what: str, empty: bool = False) -> list[str]:
    """``data`` if it is a list of unique strings, non-empty unless ``empty`` (``what`` names it in errors), else
    ValueError."""
    if not isinstance(data, list):
        raise ValueError(f"{what} must be a list of strings, not {_quoted(data)}")
    seen: set[str] = set()
    for i, word in enumerate(data):
        if not isinstance(word, str) or not (empty or word.strip()):
            raise ValueError(
                f"{what} item {i + 1} must be a {'' if empty else 'non-empty '}string, not {_quoted(word)}"
            )
        if word in seen:
            raise ValueError(f"{what} item {i + 1}, {_quoted(word)}, appears more than once")
        seen.add(word)
    return data


def read_answers(path: Path, data: Any) -> list[str]:
    """The answer classes of ``answers.json``. One may be empty: humans gave that answer, and the shipped
    weights have it as a class."""
    with config_errors(path):
        return strings(data, "the answer list", empty=True)


def read_vocabulary(path: Path, data: Any) -> Vocabulary:
    """The :class:`Vocabulary` of ``vocab.json``: ``{"max_length": N, "words": [...]}``."""
    with config_errors(path):
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, not {_quoted(data)}")
        max_length = checked("max_length", data["max_length"], _setting(DecodeConfig, "max_length"))
        return Vocabulary(strings(data["words"], "words"), max_length)


MAX_LABEL = 80  # characters of a cell's label


def _words(data: Any, where: str) -> None:
    """A cell's ``after`` or ``before`` words: a list of [word, effect] pairs."""
    if not isinstance(data, list):
        raise ValueError(f"{where} must be a list of [word, effect] pairs, not {_quoted(data)}")
    for i, pair in enumerate(data):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ValueError(f"{where} item {i + 1} must be a [word, effect] pair, not {_quoted(pair)}")
        check_value(f"{where} item {i + 1} effect", pair[1], "float", {"limits": {"low": -1e6, "high": 1e6}})


def read_atlas(path: Path, data: Any, kinds: tuple[str, ...], size: int) -> dict[str, list[dict]]:
    """The cells of a ``cells.json`` atlas for a decoder whose states are ``kinds``, of ``size`` cells each."""
    with config_errors(path):
        if not isinstance(data, dict) or data.get("format") != ATLAS_FORMAT:
            raise ValueError(f'not a cell atlas (expected a JSON object with "format": "{ATLAS_FORMAT}")')
        cells = section(data, "cells")
        if sorted(cells) != sorted(kinds):
            raise ValueError(
                f"cells must describe the states {', '.join(kinds)} of the decoder, not "
                f"{_quoted(', '.join(sorted(map(str, cells))))}"
            )
        for kind in kinds:
            entries = cells[kind]
            if not isinstance(entries, list) or len(entries) != size:
                raise ValueError(
                    f"cells.{kind} must be a list of {size} cells (the decoder's), not "
                    f"{len(entries) if isinstance(entries, list) else _quoted(entries)}"
                )
            for i, entry in enumerate(entries):
                where = f"cells.{kind}[{i}]"
                if not isinstance(entry, dict):
                    raise ValueError(f"{where} must be a JSON object, not {_quoted(entry)}")
                label = entry["label"]
                if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL or "\n" in label:
                    raise ValueError(
                        f"{where}.label must be one line of 1 to {MAX_LABEL} characters, not {_quoted(label)}"
                    )
                check_value(f"{where}.tracks", entry["tracks"], "str", {"choices": TRACKS})
                check_value(f"{where}.position_r", entry["position_r"], "float", {"limits": {"low": -1.0, "high": 1.0}})
                check_value(
                    f"{where}.selectivity", entry["selectivity"], "float", {"limits": {"low": 0.0, "high": 1e6}}
                )
                for context in ("after", "before"):
                    _words(entry[context], f"{where}.{context}")
        return cells


def _setting(config_cls: type, name: str):
    return next(f for f in settings(config_cls) if f.name == name)


def read_encoder(config: dict) -> str:
    """The encoder that ``config.json`` names (one of :data:`captioner.encoder.ENCODERS`)."""
    return check_value("encoder", config["encoder"], "str", {"choices": tuple(ENCODERS)})


def read_confidence(config: dict) -> dict[str, float]:
    """The "not sure" thresholds of ``config.json`` (``{"answer": 0.35}``); empty when it records none."""
    thresholds = section(config, "confidence", required=False)
    for key, value in thresholds.items():
        if key not in CONFIDENCE_KEYS:
            raise ValueError(f"confidence has no threshold {_quoted(key)} (it may have {', '.join(CONFIDENCE_KEYS)})")
        check_value(f"confidence.{key}", value, "float", {"limits": {"low": 0.0, "high": 1.0}})
    return {key: float(value) for key, value in thresholds.items()}


def read_choice_weights(config: dict) -> ChoiceWeights | None:
    """The multiple-choice rule fitted for these VQA weights (``"choices": {"vqa_weight": ..., ...}``), or None."""
    weights = section(config, "choices", required=False)
    if not weights:
        return None
    keys = list(ChoiceWeights.__dataclass_fields__)
    required = [k for k, f in ChoiceWeights.__dataclass_fields__.items() if f.default is MISSING]
    if not set(required) <= set(weights) <= set(keys):
        raise ValueError(
            f"choices must give {', '.join(required)}, and may give {', '.join(sorted(set(keys) - set(required)))}"
        )
    limits = {"limits": {"low": -100.0, "high": 100.0}}
    return ChoiceWeights(
        **{key: check_value(f"choices.{key}", value, "float", limits) for key, value in weights.items()}
    )


def check_feature_dim(feature_dim: Any, encoder: str) -> None:
    """The architecture must read the features its encoder gives."""
    if feature_dim != ENCODERS[encoder].feature_dim:
        raise ValueError(
            f"feature_dim {_quoted(feature_dim)}, but {encoder} gives {ENCODERS[encoder].feature_dim} features"
        )


class _NoNormalInit(TorchFunctionMode):
    """Skips ``nn.init.normal_`` (inside ``torch.device("meta")``): on the meta device it alone imports
    ``torch._dynamo``, a second of start-up for values that shapes do not need."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is nn.init.normal_:
            return kwargs["tensor"] if "tensor" in kwargs else args[0]
        return func(*args, **kwargs)


def build_checked(
    config_file: Path, model_file: Path, name: str, build: Callable[[], nn.Module], extra: str = "\0"
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """``build()`` loaded with the tensors of ``model_file``, once they are known to fit it: the model is first
    built on the meta device (shapes, no memory), so that a config describing a huge model is refused before it
    costs anything, and the file's header is checked against it before any tensor is read, so that a file holding
    more than its model is too. Tensors named ``extra...`` are returned apart, for the caller to check. Errors name
    ``config_file`` and its section ``name``, or ``model_file``."""
    with config_errors(config_file, name), torch.device("meta"), _NoNormalInit():
        expected = build().state_dict()
    tensors = read_tensors(model_file, expected, extra)
    extras = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith(extra)]}
    check_tensors(model_file, tensors, expected)
    model = build()
    model.load_state_dict(tensors)
    return model, extras


# ---------------------------------------------------------------- character models (captioner.charlm)

LM_ATLAS_FORMAT = "captioner character cell atlas"  # cells.json of a character model (captioner.lecture.charcells)


def read_lm_vocabulary(path: Path, data: Any) -> CharVocab:
    """The :class:`CharVocab` of a character model's ``vocab.json``: ``{"format": ..., "chars": [...]}``."""
    with config_errors(path):
        if not isinstance(data, dict) or data.get("format") != CHARS_FORMAT:
            raise ValueError(f'not a character vocabulary (expected a JSON object with "format": "{CHARS_FORMAT}")')
        return CharVocab(data["chars"])


def read_lm_config(config: dict, vocab: CharVocab) -> CharLMConfig:
    """The model section of a character model's ``config.json``, which must fit its vocabulary."""
    if config.get("task") != "lm":
        raise ValueError(f"holds {shorten(str(config.get('task')))} weights, not character-model (lm) weights")
    model = CharLMConfig(**section(config, "model"))
    if model.vocab_size != len(vocab):
        raise ValueError(f"model: vocab_size {model.vocab_size}, but vocab.json has {len(vocab)} characters")
    return model


def _correlation(value: Any, where: str) -> float:
    return check_value(where, value, "float", {"limits": {"low": -1.0, "high": 1.0}})


def read_lm_atlas(path: Path, data: Any, model: CharLMConfig) -> dict:
    """A character model's ``cells.json``: for each signal, its best cells (``state``, ``layer``, ``cell``, ``r``),
    each naming a cell the model has; and, optionally, every cell's ``r`` by state and layer (``"c0"``)."""
    kinds, width = state_kinds(model.cell), channels(model.cell, model.hidden_dim)
    with config_errors(path):
        if not isinstance(data, dict) or data.get("format") != LM_ATLAS_FORMAT:
            raise ValueError(f'not a character cell atlas (expected "format": "{LM_ATLAS_FORMAT}")')
        signals = section(data, "signals")
        for name in signals:
            for i, cell in enumerate(section(signals, name)["best"]):
                where = f"signals.{name}.best[{i}]"
                check_value(f"{where}.state", cell["state"], "str", {"choices": kinds})
                for key, size in (("layer", model.num_layers), ("cell", width)):
                    check_value(f"{where}.{key}", cell[key], "int", {"limits": {"low": 0, "high": size - 1}})
                _correlation(cell["r"], f"{where}.r")
        every = section(data, "r", required=False)
        for key in every:
            if key not in {f"{k}{layer}" for k in kinds for layer in range(model.num_layers)}:
                raise ValueError(f"r has no state {_quoted(key)} in this model")
            for name, values in section(every, key).items():
                if not isinstance(values, list) or len(values) != width:
                    raise ValueError(f"r.{key}.{name} must be a list of {width} correlations")
                for i, value in enumerate(values):
                    _correlation(value, f"r.{key}.{name}[{i}]")
        return data
