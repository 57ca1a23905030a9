"""What a training run refuses before any work (captioner.train.preflight): a mistake costs one line, not an
epoch: an --out that is a file, --resume with nothing to resume, a --min-count that keeps no word, a model too big
for the memory, and --init-from weights no training makes."""

from __future__ import annotations

import pytest
from synthetic import make_flickr8k

from captioner.checkpoint import save_checkpoint
from captioner.decoder import CaptionDecoder, DecoderConfig
from captioner.train import preflight
from captioner.train.caption import TrainConfig, train
from captioner.train.vqa import VQATrainConfig, train_vqa


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_flickr8k(root / "flickr8k"), root / "cache"


def _config(data, out, **kw) -> TrainConfig:
    root, cache = data
    return TrainConfig(
        **{
            **dict(
                data=(f"flickr8k:{root}",),
                out=str(out),
                cache_dir=str(cache),
                epochs=1,
                batch_size=4,
                min_count=1,
                embed_dim=8,
                hidden_dim=8,
                image_dim=8,
            ),
            **kw,
        }
    )


def test_an_out_that_is_a_file_is_refused_before_training(data, tmp_path):
    (tmp_path / "taken").write_text("a file")
    for out in (tmp_path / "taken", tmp_path / "taken" / "run"):
        with pytest.raises(ValueError, match="a file is in the way of the run folder"):
            train(_config(data, out))


def test_resume_with_nothing_to_resume_is_refused(data, tmp_path):
    with pytest.raises(ValueError, match=r"--resume: no run to resume in .*start it without --resume"):
        train(_config(data, tmp_path / "new"), resume=True)


def test_a_min_count_that_keeps_no_word_is_refused(data, tmp_path):
    with pytest.raises(ValueError, match="--min-count 1000000000: no word of the training text is seen that often"):
        train(_config(data, tmp_path / "run", min_count=10**9))


def test_a_model_too_big_for_the_memory_is_refused_before_it_is_built(data, tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "available_memory", lambda: 2**30)  # 1 GiB left
    with pytest.raises(ValueError, match=r"the caption decoder has [\d,]+M parameters: training needs about"):
        train(_config(data, tmp_path / "run", hidden_dim=8192, embed_dim=8192))


def test_available_memory_reads_the_machine():
    have = preflight.available_memory()
    assert have is None or have > 0


def test_init_from_weights_no_training_makes_are_refused(data, tmp_path):
    root, _ = data
    weights = tmp_path / "weights"
    decoder = CaptionDecoder(DecoderConfig(30, 1280, 8, 8, 8))
    save_checkpoint(
        weights,
        {k: v * 1e30 if v.is_floating_point() else v for k, v in decoder.state_dict().items()},
        {"task": "caption", "encoder": "efficientnet-lite0", "decoder": vars(decoder.config)},
        {
            "vocab.json": {
                "max_length": 20,
                "words": ["<pad>", "<start>", "<end>", "<unk>"] + [f"w{i}" for i in range(26)],
            }
        },
    )
    with pytest.raises(ValueError, match=r"holds values past ±10000"):
        train(_config(data, tmp_path / "run", init_from=str(weights)))


def test_vqa_checks_the_same(tmp_path):
    with pytest.raises(ValueError, match="--min-count 1000000000"):
        train_vqa(
            VQATrainConfig(
                data=("easy-vqa",),
                out=str(tmp_path / "run"),
                epochs=1,
                min_count=10**9,
                cache_dir=str(tmp_path / "cache"),
            )
        )
