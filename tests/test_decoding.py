"""Decoding: greedy, beam search, constraints and sampling."""

from __future__ import annotations

import pytest
import torch
from synthetic import tiny_decoder

from captioner.decoding import DecodeConfig, decode, filter_logits, sample_words
from captioner.vocab import Vocabulary


def test_beam_one_equals_greedy_and_nbest_is_sorted():
    model = tiny_decoder(vocab_size=30, seed=3)
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
    model = tiny_decoder(vocab_size=30, seed=4)
    feats = torch.randn(4, 16)
    together = decode(model, feats, DecodeConfig(beam_size=3, n_best=3, max_length=8))
    alone = [decode(model, feats[i : i + 1], DecodeConfig(beam_size=3, n_best=3, max_length=8))[0] for i in range(4)]
    assert [[h.tokens for h in x] for x in together] == [[h.tokens for h in x] for x in alone]


def test_beam_returns_unfinished_best_when_end_is_never_reached():
    model = tiny_decoder(vocab_size=20, seed=5)
    model.out.bias.data[Vocabulary.end_id] = -1e4  # the model (almost) never ends a sentence
    hyps = decode(model, torch.randn(2, 16), DecodeConfig(beam_size=3, n_best=2, max_length=6))
    for per_image in hyps:
        assert len(per_image) == 2 and all(len(h.tokens) == 6 and not h.finished for h in per_image)


def test_length_constraints_and_no_repeat_ngram():
    model = tiny_decoder(vocab_size=8, seed=6)
    model.out.bias.data[5] = 20.0  # a model that loves word 5
    cfg = DecodeConfig(method="greedy", min_length=4, max_length=7)
    for method in ("greedy", "beam"):
        out = decode(
            model, torch.randn(3, 16), DecodeConfig(method=method, min_length=4, max_length=7, no_repeat_ngram=1)
        )
        for hyps in out:
            toks = hyps[0].tokens
            assert len(toks) >= 4 and len(set(toks)) == len(toks)
    assert all(len(h[0].tokens) >= 4 for h in decode(model, torch.randn(3, 16), cfg))


def test_sampling_filters_and_seed():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, top_k=2, top_p=1.0)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_k=0, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_k=0, top_p=0.4)).tolist() == [[True, False, False, False]]
    model = tiny_decoder(vocab_size=30, seed=7)
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
