"""Caption training end to end: overfitting, exact resume, encoder fine-tuning, checkpoints, SCST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from synthetic import make_flickr8k, shape_items, tiny_decoder

from captioner.checkpoint import load_checkpoint, load_state, split_encoder_weights
from captioner.encoder import build_encoder
from captioner.pipeline import Captioner
from captioner.train.caption import TrainConfig, train
from captioner.vocab import Vocabulary, tokenize_words


def _tiny_config(root: Path, out: Path, cache: Path, epochs: int, **kw) -> TrainConfig:
    base = dict(
        data=(f"flickr8k:{root}",),
        out=str(out),
        cache_dir=str(cache),
        epochs=epochs,
        batch_size=4,
        min_count=1,
        embed_dim=32,
        hidden_dim=64,
        image_dim=32,
        dropout=0.0,
        lr=1e-2,
        min_lr_ratio=0.1,
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_flickr8k(root / "flickr8k"), root / "cache"


@pytest.fixture(scope="module")
def overfit_weights(shapes, tmp_path_factory):
    root, cache = shapes
    out = tmp_path_factory.mktemp("run")
    best = train(_tiny_config(root, out, cache, epochs=25, flip_augment=False))
    assert best["CIDEr"] > 9.99  # dev = train here: every caption reproduced
    assert load_state(out / "last")["history"][-1]["loss"] < 0.1  # overfit to near-zero loss
    weights = out / "weights"
    weights.mkdir()
    (out / "best").rename(weights / "caption")
    return weights


@pytest.mark.slow
def test_overfit_tiny_set_decodes_exactly(overfit_weights, shapes):
    root, _ = shapes
    model = Captioner.from_pretrained(overfit_weights)
    _, config = load_checkpoint(overfit_weights / "caption")
    assert config["training"]["epochs"] == 25
    for name, _, _, caption in shape_items():
        image = root / "images" / name
        assert model.caption(image, method="greedy") == caption
        assert model.caption(image, beam_size=3) == caption


@pytest.mark.slow
@pytest.mark.parametrize("finetune_blocks", [0, 1])
def test_killed_and_resumed_run_matches_uninterrupted(shapes, tmp_path, monkeypatch, finetune_blocks):
    root, cache = shapes
    kw = dict(epochs=4, save_every=3, flip_augment=True, dropout=0.2, finetune_blocks=finetune_blocks)
    train(_tiny_config(root, tmp_path / "full", cache, **kw))

    # Kill the second run in the middle of epoch 3 (16 captions / batch 4 = 4 steps an epoch).
    real_step, calls = torch.optim.Adam.step, []

    def dying_step(self, *a, **k):
        calls.append(1)
        if len(calls) == 12:
            raise KeyboardInterrupt("killed")
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(_tiny_config(root, tmp_path / "cut", cache, **kw))
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    state = load_state(tmp_path / "cut" / "last")
    assert (state["epoch"], state["step_in_epoch"]) == (2, 3)  # the mid-epoch checkpoint survived

    train(_tiny_config(root, tmp_path / "cut", cache, **kw), resume=True)
    full, _ = load_checkpoint(tmp_path / "full" / "last")
    resumed, _ = load_checkpoint(tmp_path / "cut" / "last")
    for k in full:
        torch.testing.assert_close(full[k], resumed[k], rtol=0, atol=0)
    val = lambda run: [(h["loss"], h["CIDEr"]) for h in load_state(tmp_path / run / "last")["history"]]
    assert val("cut") == val("full")


@pytest.mark.slow
def test_finetuned_top_block_is_trained_saved_and_used_when_captioning(shapes, tmp_path):
    """--finetune-blocks trains the encoder's head on cached trunk outputs; the checkpoint carries it, and
    the captioner computes its features with it (not with the pretrained head)."""
    root, cache = shapes
    train(_tiny_config(root, tmp_path, cache, epochs=3, finetune_blocks=1, encoder_lr=1e-3))
    tuned = split_encoder_weights(load_checkpoint(tmp_path / "best")[0])[1]
    pretrained = build_encoder("efficientnet-lite0", trainable_blocks=1).tuned_state_dict()
    assert tuned.keys() == pretrained.keys() and tuned
    assert not all(torch.equal(tuned[k], pretrained[k]) for k in tuned)  # the head learnt

    (tmp_path / "weights").mkdir()
    (tmp_path / "best").rename(tmp_path / "weights" / "caption")
    features = Captioner.from_pretrained(tmp_path / "weights", load_vqa=False, precision="fp32").preprocess
    image = root / "images" / shape_items()[0][0]
    with torch.no_grad():
        for encoder, same in [(build_encoder(tuned=tuned), True), (build_encoder(), False)]:
            close = torch.allclose(features([image]), encoder(encoder.preprocess(image)[None]), atol=1e-3)
            assert close == same


def test_checkpoints_hold_no_pickles(overfit_weights):
    folder = overfit_weights / "caption"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    json.loads((folder / "config.json").read_text())
    with open(folder / "model.safetensors", "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        json.loads(f.read(header_len))  # safetensors: a JSON header then raw tensor bytes, no pickle


def test_scst_reward_is_cider_d_with_training_set_document_frequencies():
    """With the evaluated set as the 'training set', the reward equals pycocoevalcap's per-image CIDEr-D."""
    from pycocoevalcap.cider.cider import Cider

    from captioner.train.scst import CiderReward

    refs = [
        [tokenize_words(c) for c in caps]
        for caps in (
            ["a dog runs on the grass", "a brown dog running", "the dog is running outside"],
            ["two people ride bikes", "people riding bicycles down a street", "two cyclists on a road"],
            ["a child plays in the water", "a kid splashing in a pool", "a boy swims"],
        )
    ]
    hyps = [
        tokenize_words("a brown dog runs on grass"),
        tokenize_words("two people ride bicycles on a road"),
        tokenize_words("a dog plays in the water"),
    ]
    _, expected = Cider().compute_score(
        {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}, {i: [" ".join(h)] for i, h in enumerate(hyps)}
    )
    reward = CiderReward(refs)
    assert [reward(i, h) for i, h in enumerate(hyps)] == pytest.approx(list(expected), abs=1e-9)


@pytest.mark.slow
def test_scst_after_cross_entropy_starts_from_the_best_epoch(shapes, tmp_path, monkeypatch):
    import captioner.train.caption as caption_training

    root, cache = shapes
    scores = iter([3.0, 2.0, 1.0, 0.0])  # the first cross-entropy epoch is the best, and stays best
    monkeypatch.setattr(
        caption_training,
        "validate",
        lambda *a, **k: {"loss": 1.0, "Bleu_4": 0.0, "CIDEr": next(scores), "datasets": {}},
    )
    first_scst_weights = []
    real_scst_loss = caption_training.scst_loss

    def spy(model, *args, **kwargs):
        if not first_scst_weights:
            first_scst_weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_scst_loss(model, *args, **kwargs)

    monkeypatch.setattr(caption_training, "scst_loss", spy)
    train(_tiny_config(root, tmp_path, cache, epochs=3, scst_epochs=1))
    best, _ = load_checkpoint(tmp_path / "best")  # written after epoch 1, never again
    for k in best:
        torch.testing.assert_close(first_scst_weights[0][k], best[k], rtol=0, atol=0)
    groups = load_state(tmp_path / "last")["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([5e-5])  # SCST trains at --scst-lr, not on the schedule


def test_scst_samples_with_the_decoders_sampler_and_never_emits_markers_or_unk():
    from captioner.train.scst import CiderReward, scst_loss

    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "runs"], max_length=4)
    model = tiny_decoder(len(vocab))
    reward, seen = CiderReward([[["a", "dog", "runs"]], [["a", "dog"]]]), []

    def reward_spy(image: int, words: list[str]) -> float:
        seen.append(words)
        return reward(image, words)

    loss, _ = scst_loss(model, torch.randn(2, 16), [0, 1], reward_spy, vocab, samples=5)
    loss.backward()
    assert len(seen) == 10 and all(len(w) <= vocab.max_length for w in seen)
    assert not {w for words in seen for w in words} & {"<pad>", "<start>", "<unk>"}
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.out.parameters())


def test_gradient_figures_count_the_steps_clipping_fired_on():
    from captioner.train.loop import gradient_figures, gradient_words

    figures = gradient_figures([1.0, 6.0, 2.0, 7.0], clip_norm=5.0)
    assert figures == {"grad_norm_mean": 4.0, "grad_norm_max": 7.0, "clipped_share": 0.5}
    assert gradient_words(figures) == "grad norm mean 4.00 max 7.00, clipped 50.0% of steps"
    assert gradient_figures([], clip_norm=5.0) == {} and gradient_words({}) == ""


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_training_log_records_the_gradient_norm_and_the_clipping_share(shapes, tmp_path, cell, capsys):
    """Every epoch's history (and its log line) has the norm before clipping and how often clipping fired."""
    root, cache = shapes
    shares = []
    for clip_norm in (1e-6, 1e6):  # clipping fires on every step, then on none
        out = tmp_path / str(clip_norm)
        train(_tiny_config(root, out, cache, epochs=2, cell=cell, clip_norm=clip_norm))
        history = load_state(out / "last")["history"]
        assert len(history) == 2
        assert all(0 < h["grad_norm_mean"] <= h["grad_norm_max"] for h in history)
        shares.append([h["clipped_share"] for h in history])
    assert shares == [[1.0, 1.0], [0.0, 0.0]]
    assert "clipped 100.0% of steps" in capsys.readouterr().out
