"""Settings are defined once, on the config fields: help, range and default. Every training option can be made
from them alone, every out-of-range, non-finite or ill-typed value is refused in one line, from Python as from the
command line; the dataset list, the feature cache folder and vocab.json behave as documented."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import pytest
from conftest import ROOT

from captioner.decoder import DecoderConfig
from captioner.decoding import DecodeConfig
from captioner.features import default_cache_dir
from captioner.settings import add_options, default_of, kind_of, like, settings
from captioner.train.caption import TrainConfig, train
from captioner.train.loop import RunConfig
from captioner.train.vqa import VQATrainConfig, train_vqa
from captioner.vocab import Vocabulary
from captioner.vqa import VQAConfig

TRAINING = (TrainConfig, VQATrainConfig)
CONFIGS = (RunConfig, *TRAINING, DecoderConfig, VQAConfig, DecodeConfig)
DATA_KEYS = {"vocab_size", "num_answers", "feature_dim", "concept_dim"}  # fields the data decides: not settings


def _numbers(config_cls) -> list[dataclasses.Field]:
    return [f for f in settings(config_cls) if kind_of(f) in ("int", "float")]


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_is_a_setting_with_help(config_cls):
    for f in dataclasses.fields(config_cls):
        if f.name in DATA_KEYS:
            continue
        assert f in settings(config_cls), f.name
        assert f.metadata["help"].strip() and "\n" not in f.metadata["help"], f.name


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_number_has_a_lower_and_an_upper_bound(config_cls):
    for f in _numbers(config_cls):
        limits = f.metadata["limits"]
        assert {"low", "above"} & limits.keys() and {"high", "below"} & limits.keys(), f.name
        assert all(math.isfinite(v) for v in limits.values()), f.name


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_pass_their_own_checks(config_cls):
    required = {name: 1 for name in DATA_KEYS if name in {f.name for f in dataclasses.fields(config_cls)}}
    config = config_cls(**required)
    for f in settings(config_cls):
        assert getattr(config, f.name) == default_of(f)


def _bad_values(f: dataclasses.Field) -> list:
    """Values setting ``f`` must refuse: out of its range, not finite, of the wrong type."""
    kind, limits = kind_of(f), f.metadata["limits"]
    if kind == "bool":
        return [1, "yes", None]
    if kind == "tuple":
        return ["flickr8k:x", (1,)]
    if kind == "str":
        return [1, *(["no-such-choice"] if f.metadata["choices"] else [])]
    step = 1 if kind == "int" else 1e-9
    bad = [
        limits["low"] - step if "low" in limits else limits["above"],
        limits["high"] + step if "high" in limits else limits["below"],
        "1",
        True,
    ]
    if kind == "int":
        return bad + [1.5, 1.0]  # a float, even a whole one, is not an int
    return bad + [math.nan, math.inf, -math.inf, 1e300 if limits.get("high", math.inf) < 1e300 else -1e300]


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_check_refuses_bad_values_in_one_line(config_cls):
    required = {name: 1 for name in DATA_KEYS if name in {f.name for f in dataclasses.fields(config_cls)}}
    for f in settings(config_cls):
        for value in _bad_values(f):
            with pytest.raises(ValueError) as error:
                config_cls(**required, **{f.name: value})
            message = str(error.value)
            assert message.startswith(f"{f.name} must be") and "\n" not in message, (f.name, value, message)


def test_absurd_training_values_are_refused():
    for bad in [
        dict(epochs=0),
        dict(epochs=10**6),
        dict(lr=1e300),
        dict(hidden_dim=10**6),
        dict(num_layers=17),
        dict(max_length=101),
        dict(seed=-1),
        dict(seed=2**32),
        dict(scst_samples=1),
        dict(threads=1025),
    ]:
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} must be"):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="^epochs must be at least 1 and at most 10000, not 0$"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="^lr must be at most 10 and more than 0, not 1e\\+300$"):
        VQATrainConfig(lr=1e300)
    for bad in [dict(val_fraction=1.0), dict(top_answers=0), dict(fusion="sum"), dict(dropout=1.0)]:
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} must be"):
            VQATrainConfig(**bad)


def test_model_shape_settings_are_the_model_configs():
    for training, model in ((TrainConfig, DecoderConfig), (VQATrainConfig, VQAConfig)):
        model_settings = {f.name: f for f in settings(model)}
        for f in settings(training):
            if f.name in model_settings:
                assert f.metadata == model_settings[f.name].metadata and default_of(f) == default_of(
                    model_settings[f.name]
                ), f.name
    assert TrainConfig().hidden_dim == DecoderConfig.hidden_dim and VQATrainConfig().hidden_dim == VQAConfig.hidden_dim


def test_like_copies_a_setting_with_changes():
    @dataclasses.dataclass
    class Small:
        lr: float = like(RunConfig, "lr", default=0.5)

    (f,) = dataclasses.fields(Small)
    assert f.default == 0.5 and f.metadata["limits"] == {"above": 0, "high": 10}
    assert f.metadata["help"] == next(g for g in settings(RunConfig) if g.name == "lr").metadata["help"]
    with pytest.raises(KeyError):
        like(RunConfig, "no_such_setting")


@pytest.mark.parametrize("config_cls", TRAINING, ids=lambda c: c.__name__)
def test_the_options_can_be_made_from_the_fields_alone(config_cls):
    parser = argparse.ArgumentParser()
    add_options(parser, config_cls)
    formatter = parser._get_formatter()
    options = [a for a in parser._actions if a.dest != "help"]
    assert {a.dest for a in options} == {f.name for f in settings(config_cls)}
    for action in options:
        text = formatter._get_help_string(action)
        assert "(default: " in text and text.endswith(")"), action.dest
    args = parser.parse_args([])
    assert dataclasses.asdict(config_cls(**{k: v for k, v in vars(args).items()})) == dataclasses.asdict(config_cls())
    with pytest.raises(SystemExit):
        parser.parse_args(["--epochs", "0"])


def test_no_datasets_is_a_one_line_error_that_shows_the_formats(tmp_path):
    with pytest.raises(ValueError) as error:
        train(TrainConfig(out=str(tmp_path / "run")))
    message = str(error.value)
    assert message == (
        "no datasets: give --data FORMAT:FOLDER[:WEIGHT] at least once (formats: flickr8k, coco, "
        "karpathy, imagefolder; e.g. --data flickr8k:data/flickr8k --data coco:data/coco:1.5)"
    )
    with pytest.raises(
        ValueError,
        match=r"^no datasets: .*formats: daquar, coco, vqa2, easy-vqa \(no FOLDER\), generated, imagefolder; e\.g",
    ):
        train_vqa(VQATrainConfig(out=str(tmp_path / "vqa")))
    assert not (tmp_path / "run").exists() and not (tmp_path / "vqa").exists()


@pytest.mark.parametrize(
    "config_cls, data, says",
    [
        (TrainConfig, "flickr8k", "dataset 'flickr8k': give its folder, as flickr8k:FOLDER[:WEIGHT]"),
        (
            TrainConfig,
            "daquar:x",
            "dataset 'daquar:x': unknown format 'daquar' (formats: flickr8k, coco, karpathy, imagefolder)",
        ),
        (
            TrainConfig,
            "coco:x:0",
            "dataset 'coco:x:0': expected NAME:ROOT or NAME:ROOT:WEIGHT with a weight above 0 and at most 100",
        ),
        (VQATrainConfig, "daquar", "dataset 'daquar': give its folder, as daquar:FOLDER[:WEIGHT]"),
        (VQATrainConfig, "karpathy:x", "dataset 'karpathy:x': unknown format 'karpathy'"),
    ],
)
def test_unusable_datasets_are_one_line_errors(config_cls, data, says):
    with pytest.raises(ValueError) as error:
        config_cls(data=(data,))
    assert str(error.value).startswith(says) and "\n" not in str(error.value)


def test_datasets_are_named_and_need_a_folder_only_where_the_format_does():
    cfg = VQATrainConfig(data=["easy-vqa", "coco:a", "coco:b:0.5"])
    assert cfg.data == ("easy-vqa", "coco:a", "coco:b:0.5")  # a list (as argparse gives) becomes a tuple
    assert [(name, spec.root, spec.weight) for name, spec in cfg.datasets()] == [
        ("easy-vqa", None, 1.0),
        ("coco-1", "a", 1.0),
        ("coco-2", "b", 0.5),
    ]


def test_the_cache_folder_is_read_when_used(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path / "a"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.setenv("CAPTIONER_CACHE", str(tmp_path / "b"))
    assert default_cache_dir() == tmp_path / "b"
    monkeypatch.delenv("CAPTIONER_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "captioner")
    assert (
        TrainConfig().cache_dir is None
        and "CAPTIONER_CACHE" in next(f for f in settings(TrainConfig) if f.name == "cache_dir").metadata["help"]
    )


@pytest.mark.parametrize("task", ["caption", "vqa"])
def test_vocabulary_save_writes_the_shipped_format(tmp_path, task):
    shipped = ROOT / "weights" / task / "vocab.json"
    if not shipped.exists():
        pytest.skip("no shipped weights")
    vocab = Vocabulary.load(shipped)
    vocab.save(tmp_path / "vocab.json")
    assert (tmp_path / "vocab.json").read_bytes() == shipped.read_bytes()
    assert json.loads(shipped.read_text()).keys() == {"max_length", "words"}
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # written atomically: no temporary file left


def test_vocabulary_save_leaves_the_old_file_when_it_fails(tmp_path, monkeypatch):
    path = tmp_path / "vocab.json"
    Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a"]).save(path)
    before = path.read_bytes()
    monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "b"]).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["vocab.json"]
