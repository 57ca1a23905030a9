"""Versioned weights entries, as torchvision's ``Weights``: what each set of shipped weights is.

An entry names one set of weights and carries what it needs to be used as it was trained and
evaluated: its task, its folder (under :func:`weights_root`), its encoder and that encoder's
preprocessing, its decoding defaults, its dev scores, the command that trained it, and the
licence of its data. An entry never changes meaning: weights trained with another preprocessing
or recipe become a new entry (``...-v3``). The package ships the current entries; earlier ones
are in the git history, their weights with them, and load as folders.

    from captioner.pretrained import list_weights
    for w in list_weights():
        print(w.name, w.task, w.scores)
    Captioner.from_pretrained("caption-flickr8k-coco-v3")   # or a folder, or nothing: the default entry

A plain folder (a training run's ``best/``) is described by its own ``config.json``: its
``"decoding"`` and ``"preprocessing"`` sections when present, else the library's defaults.

:func:`load_pretrained` is the one loader of weights folders, for captions and answers alike: it
finds the folders, reads every file once, checks them against their schema (:mod:`captioner.schema`: a
bad folder is a one-line error naming the file and the field, before anything is allocated), and builds the
models, so that a facade (:mod:`captioner.pipeline`) only adds the image encoder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import schema
from .charlm import CharLM, CharVocab
from .checkpoint import CONFIG_FILE, ENCODER_PREFIX, MODEL_FILE, read_checkpoint_files
from .choices import ChoiceWeights
from .decoder import CaptionDecoder, DecoderConfig
from .decoding import DecodeConfig
from .encoder import TF_LITE_MEAN, TF_LITE_STD, Preprocessing
from .io import config_errors, read_json, shorten
from .options import CAPTION_DECODING
from .vocab import VOCAB_FILE, Vocabulary
from .vqa import ANSWERS_FILE, VQAConfig, VQAModel

TASKS = ("caption", "vqa", "lm")


@dataclass(frozen=True)
class Weights:
    """One set of weights and everything needed to use it as it was trained and scored."""

    name: str
    task: str  # "caption" or "vqa"
    folder: str  # under weights_root()
    encoder: str  # "" for a character model (task "lm"), which reads no images
    preprocessing: Preprocessing | None
    recipe: str  # the commands that made it, in order: training, then the steps that finish the folder
    data_license: str
    decoding: dict[str, Any] = field(default_factory=dict)  # DecodeConfig settings (caption entries)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # dev scores, by "dataset split"

    @property
    def path(self) -> Path:
        return weights_root() / self.folder


def weights_root() -> Path:
    """Where the shipped weights are: ``$CAPTIONER_WEIGHTS``, else installed inside the package (a wheel,
    ``pip install .``), else the ``weights/`` folder of a source checkout (``pip install -e .``)."""
    if os.environ.get("CAPTIONER_WEIGHTS"):
        return Path(os.environ["CAPTIONER_WEIGHTS"])
    package = Path(__file__).resolve().parent
    return package / "weights" if (package / "weights").is_dir() else package.parent / "weights"


_LM_OPTIONS = (
    "--num-layers 1 --hidden-dim 512 --batch-size 32 --bptt 100 --lr 3e-3 --epoch-chars 400000 "
    "--sample-every 100 --save-every 50 --threads 1"
)  # what the character models share


def _lm_recipe(folder: str, text: str, options: str) -> str:
    """A character model's recipe: train on ``text`` (under ../shared/data/text), map its cells, copy it in."""
    return (
        f"captioner lm train {' '.join(f'--text ../shared/data/text/{t}' for t in text.split())} {options} "
        f"--out runs/{folder} && captioner lm atlas --weights runs/{folder}/best --write && "
        f"cp runs/{folder}/best/{{model.safetensors,config.json,vocab.json,cells.json}} weights/{folder}/"
    )


_LITE0 = Preprocessing(224, TF_LITE_MEAN, TF_LITE_STD)  # EfficientNet-Lite inputs in [-1, 1], as trained in TF
_CAPTION_DATA = (
    "Flickr8k (Hodosh, Young & Hockenmaier 2013): research use only; MS COCO (Lin et al. 2014): "
    "annotations CC BY 4.0, images under their Flickr licences, research use"
)

_DEV = "--data flickr8k:../shared/data/flickr8k --data coco:../shared/data/coco"  # the later steps' dev sets
CAPTION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
_BEAM3 = CAPTION_DECODING  # the default caption entry's decoding: the LSTM's dev-tuned defaults


def _caption_scores(flickr8k: tuple[float, ...], coco: tuple[float, ...]) -> dict[str, dict[str, float]]:
    """A caption entry's dev scores (``benchmarks/bench_caption.py``), each set's given in the order of
    :data:`CAPTION_METRICS`."""
    return {"flickr8k dev": dict(zip(CAPTION_METRICS, flickr8k)), "coco dev": dict(zip(CAPTION_METRICS, coco))}


_ENTRIES = [
    Weights(
        name="caption-flickr8k-coco-v3",
        task="caption",
        folder="caption",
        encoder="efficientnet-lite0",
        preprocessing=_LITE0,
        decoding=_BEAM3,
        scores=_caption_scores(
            flickr8k=(0.6225, 0.4319, 0.2928, 0.1991, 0.1929, 0.4454, 0.4825),
            coco=(0.6629, 0.4738, 0.3322, 0.2338, 0.2110, 0.4782, 0.6812),
        ),
        recipe="captioner train --data flickr8k:../shared/data/flickr8k --data coco:../shared/data/coco:1.5 "
        "--out runs/mix --scst-epochs 1 && cp runs/mix/best/* weights/caption/ && "
        f"captioner atlas {_DEV} --weights weights/caption --write && "
        f"captioner calibrate {_DEV} --weights weights --task caption --write",
        data_license=_CAPTION_DATA,
    ),
    Weights(  # the LSTM's recipe with a vanilla tanh RNN: the lecture's gradient-flow comparison (docs/rnn.md)
        name="caption-rnn-flickr8k-coco-v1",
        task="caption",
        folder="caption-rnn",
        encoder="efficientnet-lite0",
        preprocessing=_LITE0,
        decoding={**_BEAM3, "no_repeat_ngram": 3},  # as its scores were measured (bigram blocking: the LSTM's)
        scores=_caption_scores(
            flickr8k=(0.6114, 0.4194, 0.2841, 0.1889, 0.1815, 0.4276, 0.4395),
            coco=(0.6340, 0.4485, 0.3109, 0.2121, 0.2001, 0.4710, 0.5810),
        ),
        recipe="captioner train --data flickr8k:../shared/data/flickr8k --data coco:../shared/data/coco:1.5 "
        "--out runs/rnn --scst-epochs 1 --cell rnn && cp runs/rnn/best/* weights/caption-rnn/ && "
        f"captioner atlas {_DEV} --weights weights/caption-rnn --write && "
        f"captioner calibrate {_DEV} --weights caption-rnn-flickr8k-coco-v1 --task caption --write",
        data_license=_CAPTION_DATA,
    ),
    Weights(  # the LSTM's recipe with the selective state-space cell (captioner.ssm): issue 40's caption decoder
        name="caption-ssm-flickr8k-coco-v1",
        task="caption",
        folder="caption-ssm",
        encoder="efficientnet-lite0",
        preprocessing=_LITE0,
        decoding=_BEAM3,
        scores=_caption_scores(
            flickr8k=(0.6359, 0.4474, 0.3070, 0.2077, 0.1955, 0.4498, 0.5093),
            coco=(0.6547, 0.4782, 0.3398, 0.2417, 0.2138, 0.4822, 0.6886),
        ),
        recipe="captioner train --data flickr8k:../shared/data/flickr8k --data coco:../shared/data/coco:1.5 "
        "--out runs/ssm --scst-epochs 1 --cell ssm && cp runs/ssm/best/* weights/caption-ssm/ && "
        f"captioner calibrate {_DEV} --weights caption-ssm-flickr8k-coco-v1 --task caption --write",
        data_license=_CAPTION_DATA,
    ),
    Weights(
        name="vqa-daquar-coco-v4",  # reads the concept detectors' probabilities too (weights/concepts)
        task="vqa",
        folder="vqa",
        encoder="efficientnet-lite0",
        preprocessing=_LITE0,
        scores={"daquar by-image val": {"accuracy": 0.2439}, "coco dev": {"accuracy": 0.4341}},
        recipe="captioner concepts train --data flickr8k:../shared/data/flickr8k --data coco:../shared/data/coco "
        "--out runs/concepts --epochs 8 && cp runs/concepts/best/* weights/concepts/ && "
        "captioner train-vqa --data daquar:../shared/data/daquar --data coco:../shared/data/coco "
        "--seed 1 --concepts weights/concepts --out runs/vqa && cp runs/vqa/best/* weights/vqa/ && "
        "captioner calibrate --data coco:../shared/data/coco --weights weights --task answer --write && "
        "captioner calibrate --data coco:../shared/data/coco --weights weights --task yes_no --write && "
        "captioner fit-choices --data coco:../shared/data/coco --weights weights",
        data_license="DAQUAR (Malinowski & Fritz 2014) on NYU-Depth v2 images: research use; questions on MS COCO "
        "images from VQA v2 (CC BY 4.0), VQA-X, OK-VQA, COCO-QA and POPE: research use",
    ),
    # character-level language models (captioner.charlm); scores: nats per character on the held-out last 10%
    Weights(  # v1's shape with dropout 0.2 and 36 epochs: issue 40's equal-time LSTM, the best character model
        name="lm-shakespeare-v2",
        task="lm",
        folder="lm-shakespeare-v2",
        encoder="",
        preprocessing=None,
        scores={"tinyshakespeare val": {"nats_per_char": 1.4634, "bits_per_char": 2.1112}},
        recipe=_lm_recipe(
            "lm-shakespeare-v2",
            "tinyshakespeare/input.txt",
            _LM_OPTIONS.replace("--sample-every 100", "--sample-every 0") + " --epochs 36 --dropout 0.2",
        ),
        data_license="tiny-shakespeare (Karpathy's char-rnn corpus): public domain",
    ),
    Weights(
        name="lm-shakespeare-v1",
        task="lm",
        folder="lm-shakespeare",
        encoder="",
        preprocessing=None,
        scores={"tinyshakespeare val": {"nats_per_char": 1.5424, "bits_per_char": 2.2253}},
        recipe=_lm_recipe("lm-shakespeare", "tinyshakespeare/input.txt", _LM_OPTIONS + " --epochs 11"),
        data_license="tiny-shakespeare (Karpathy's char-rnn corpus): public domain",
    ),
    Weights(  # the same shape with a vanilla tanh RNN: the lecture's gradient-flow comparison
        name="lm-shakespeare-rnn-v1",
        task="lm",
        folder="lm-shakespeare-rnn",
        encoder="",
        preprocessing=None,
        scores={"tinyshakespeare val": {"nats_per_char": 1.8266, "bits_per_char": 2.6353}},
        recipe=_lm_recipe(
            "lm-shakespeare-rnn",
            "tinyshakespeare/input.txt",
            "--cell rnn " + _LM_OPTIONS.replace("3e-3", "1e-3") + " --epochs 6",
        ),
        data_license="tiny-shakespeare (Karpathy's char-rnn corpus): public domain",
    ),
    Weights(  # about the LSTM's parameter count with the selective state-space cell (issue 40)
        name="lm-shakespeare-ssm-v1",
        task="lm",
        folder="lm-shakespeare-ssm",
        encoder="",
        preprocessing=None,
        scores={"tinyshakespeare val": {"nats_per_char": 1.5557, "bits_per_char": 2.2444}},
        recipe=_lm_recipe(
            "lm-shakespeare-ssm",
            "tinyshakespeare/input.txt",
            "--cell ssm --num-layers 2 --hidden-dim 304 --dropout 0.2 --batch-size 32 --bptt 128 --lr 3e-3 "
            "--epoch-chars 400000 --sample-every 100 --save-every 50 --threads 1 --epochs 17",
        ),
        data_license="tiny-shakespeare (Karpathy's char-rnn corpus): public domain",
    ),
    Weights(
        name="lm-linux-v1",
        task="lm",
        folder="lm-linux",
        encoder="",
        preprocessing=None,
        scores={"linux kernel+mm val": {"nats_per_char": 1.2911, "bits_per_char": 1.8627}},
        recipe=_lm_recipe(
            "lm-linux",
            "linux/kernel linux/mm",
            _LM_OPTIONS.replace("400000", "500000").replace(
                "--sample-every 100 --save-every 50", "--sample-every 300 --save-every 100"
            )
            + " --epochs 10",
        ),
        data_license="the C files of Linux 6.1's kernel/ and mm/: GPL-2.0 (the weights are trained on GPL code)",
    ),
]
ENTRIES = {w.name: w for w in _ENTRIES}
DEFAULT = {
    "caption": "caption-flickr8k-coco-v3",
    "vqa": "vqa-daquar-coco-v4",  # what from_pretrained() loads
    "lm": "lm-shakespeare-v2",
}  # and load_lm()
CELL_ENTRIES = {"lstm": "caption-flickr8k-coco-v3", "rnn": "caption-rnn-flickr8k-coco-v1"}  # the shipped decoders


def list_weights(task: str | None = None) -> list[Weights]:
    """The weights entries (of ``task`` when given), defaults first."""
    return sorted((w for w in _ENTRIES if task in (None, w.task)), key=lambda w: w.name not in DEFAULT.values())


def get_weights(name: str) -> Weights:
    """The entry called ``name``; ValueError listing the others when there is none."""
    if name not in ENTRIES:
        raise ValueError(f"no weights entry {name!r} (entries: {', '.join(ENTRIES)})")
    return ENTRIES[name]


def resolve_weights(weights: str | Path | Weights | None, task: str) -> tuple[Path, Weights | None]:
    """The folder of ``task`` weights, and their entry when they are a listed one.

    ``weights`` is an entry or its name, a folder holding ``config.json`` or ``TASK/config.json`` (such as
    the shipped ``weights/``), or None for the default entry of ``task``. A folder that holds an entry's
    weights is that entry. FileNotFoundError when there are no such weights.
    """
    if weights is None:
        weights = DEFAULT[task]
    if isinstance(weights, str) and weights in ENTRIES and not Path(weights).exists():
        weights = ENTRIES[weights]
    if isinstance(weights, Weights):
        if weights.task != task:
            raise ValueError(f"{weights.name} holds {weights.task} weights, not {task} weights")
        if not (weights.path / CONFIG_FILE).exists():
            raise FileNotFoundError(f"no {task} weights in {weights.path} (entry {weights.name})")
        return weights.path, weights
    root = Path(weights)
    for candidate in (root / task, root):
        if (candidate / CONFIG_FILE).exists():
            return candidate, _entry_at(candidate, task)
    raise FileNotFoundError(f"no {task} weights in {root} (expected {root / task}/{CONFIG_FILE})")


def _entry_at(folder: Path, task: str) -> Weights | None:
    here = folder.resolve()
    return next((w for w in _ENTRIES if w.task == task and w.path.resolve() == here), None)


def folder_preprocessing(config: dict) -> Preprocessing | None:
    """A plain folder's recorded preprocessing (``config.json["preprocessing"]``); None: the encoder's current one."""
    return Preprocessing.from_dict(config["preprocessing"]) if "preprocessing" in config else None


# ---------------------------------------------------------------- loading


@dataclass
class Loaded:
    """One task's weights, read and built: the model (eval mode), its vocabulary (and answers, for VQA), the
    encoder it was trained on with that encoder's preprocessing, and (captions) the decoding defaults and any
    fine-tuned encoder blocks."""

    path: Path
    entry: Weights | None
    model: nn.Module
    vocab: Vocabulary
    encoder: str
    preprocessing: Preprocessing | None  # None: the encoder's current default
    answers: list[str] = field(default_factory=list)
    decoding: DecodeConfig | None = None
    tuned: dict[str, torch.Tensor] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)  # "not sure" thresholds (captioner.schema)
    cells: dict[str, list[dict]] = field(default_factory=dict)  # the cell atlas, by state (captioner.atlas); {}: none
    choices: ChoiceWeights | None = None  # VQA: the multiple-choice rule fitted for these weights (captioner.choices)


def load_pretrained(weights: str | Path | Weights | None = None, with_vqa: bool = True) -> tuple[Loaded, Loaded | None]:
    """The caption weights that ``weights`` names (see :func:`resolve_weights`) and, with ``with_vqa``, the VQA
    weights that go with them: the default VQA entry for an entry, ``vqa/`` beside a folder's ``caption/``.
    FileNotFoundError or ValueError (one line, naming the file) when they cannot be used."""
    built = {}
    for task, path, entry in _folders(weights, with_vqa):
        built[task] = _build(path, entry, task)
    return built["caption"], built.get("vqa")


def load_vqa(weights: str | Path | Weights | None = None) -> Loaded:
    """VQA weights alone: an entry, its name, or a folder holding ``config.json`` or ``vqa/config.json``."""
    return _build(*resolve_weights(weights, "vqa"), "vqa")


def _folders(weights: str | Path | Weights | None, with_vqa: bool) -> list[tuple[str, Path, Weights | None]]:
    """(task, folder, entry) of the caption weights, then of the VQA weights when asked for and present."""
    path, entry = resolve_weights(weights, "caption")
    folders = [("caption", path, entry)]
    if not with_vqa:
        return folders
    named = (
        weights is None
        or isinstance(weights, Weights)
        or (isinstance(weights, str) and weights in ENTRIES and not Path(weights).exists())
    )
    # A folder's own vqa/ comes first, even when its caption/ is (a link to) an entry's; an entry brings the default.
    for source in ([] if named else [weights]) + ([None] if entry else []):
        try:
            vqa_path, vqa_entry = resolve_weights(source, "vqa")
        except FileNotFoundError:
            continue
        return folders + ([("vqa", vqa_path, vqa_entry)] if vqa_path != path else [])
    return folders


def _build(path: Path, entry: Weights | None, task: str) -> Loaded:
    """Read a weights folder once, check it against its schema (:mod:`captioner.schema`), then build its model;
    one-line errors name the file and the field."""
    files = read_checkpoint_files(path, (VOCAB_FILE, ANSWERS_FILE) if task == "vqa" else (VOCAB_FILE,))
    config, config_file = files[CONFIG_FILE], path / CONFIG_FILE
    with config_errors(config_file):
        if config.get("task", task) != task:
            raise ValueError(f"holds {shorten(str(config.get('task')))} weights, not {task} weights")
        encoder, confidence = schema.read_encoder(config), schema.read_confidence(config)
        choices = schema.read_choice_weights(config) if task == "vqa" else None
        architecture = schema.section(config, "model" if task == "vqa" else "decoder")
        decoding_defaults = entry.decoding if entry else schema.section(config, "decoding", required=False)
    with config_errors(config_file, "preprocessing"):
        preprocessing = entry.preprocessing if entry else folder_preprocessing(config)
    vocab = schema.read_vocabulary(path / VOCAB_FILE, files[VOCAB_FILE])
    if task == "vqa":
        answers = schema.read_answers(path / ANSWERS_FILE, files[ANSWERS_FILE])
        with config_errors(config_file, "model"):
            vqa_config = VQAConfig(**architecture)
            schema.check_feature_dim(vqa_config.feature_dim, encoder)
            if (vqa_config.vocab_size, vqa_config.num_answers) != (len(vocab), len(answers)):
                raise ValueError(
                    f"vocab_size {vqa_config.vocab_size} and num_answers {vqa_config.num_answers}, "
                    f"but {VOCAB_FILE} has {len(vocab)} words and {ANSWERS_FILE} {len(answers)} answers"
                )
        model, tuned = schema.build_checked(config_file, path / MODEL_FILE, "model", lambda: VQAModel(vqa_config))
        decoding = None
    else:
        answers = []
        with config_errors(config_file, "decoder"):
            decoder_config = DecoderConfig(**architecture)
            schema.check_feature_dim(decoder_config.feature_dim, encoder)
            if decoder_config.vocab_size != len(vocab):
                raise ValueError(f"vocab_size {decoder_config.vocab_size}, but {VOCAB_FILE} has {len(vocab)} words")
        with config_errors(config_file, "decoding"):
            decoding = DecodeConfig(**{"max_length": vocab.max_length, **decoding_defaults})
        model, tuned = schema.build_checked(
            config_file, path / MODEL_FILE, "decoder", lambda: CaptionDecoder(decoder_config), ENCODER_PREFIX
        )
        tuned = {k.removeprefix(ENCODER_PREFIX): v for k, v in tuned.items()}  # fine-tuned encoder blocks
    cells = {}
    atlas = path / schema.ATLAS_FILE
    if task == "caption" and atlas.is_file():
        cells = schema.read_atlas(atlas, read_json(atlas), decoder_config.state_kinds, decoder_config.hidden_dim)
    return Loaded(
        path, entry, model.eval(), vocab, encoder, preprocessing, answers, decoding, tuned, confidence, cells, choices
    )


# ---------------------------------------------------------------- character models


@dataclass
class LoadedLM:
    """A character model's weights, read and built: the model (eval mode), its characters and its cell atlas."""

    path: Path
    entry: Weights | None
    model: CharLM
    vocab: CharVocab
    atlas: dict = field(default_factory=dict)  # cells.json (captioner.lecture.charcells); {}: none


def load_lm(weights: str | Path | Weights | None = None) -> LoadedLM:
    """A character model: an entry, its name, or a folder (a run's ``best/``); None: the default entry. Every file
    is checked (:mod:`captioner.schema`) before the model is built; errors are one line naming the file."""
    path, entry = resolve_weights(weights, "lm")
    files = read_checkpoint_files(path, (VOCAB_FILE,))
    vocab = schema.read_lm_vocabulary(path / VOCAB_FILE, files[VOCAB_FILE])
    with config_errors(path / CONFIG_FILE):
        config = schema.read_lm_config(files[CONFIG_FILE], vocab)
    # stored in bfloat16 (half the file); loaded into the float32 model, which computes in float32
    model, _ = schema.build_checked(path / CONFIG_FILE, path / MODEL_FILE, "model", lambda: CharLM(config))
    atlas_file = path / schema.ATLAS_FILE
    atlas = schema.read_lm_atlas(atlas_file, read_json(atlas_file), config) if atlas_file.is_file() else {}
    return LoadedLM(path, entry, model.eval(), vocab, atlas)
