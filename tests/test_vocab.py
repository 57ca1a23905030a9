"""Tokenizing captions, and the vocabulary of words and ids."""

from __future__ import annotations

from captioner.vocab import Vocabulary, detokenize, tokenize_words


def test_tokenize_keeps_hyphens_and_splits_clitics():
    assert tokenize_words("A man's T-shirt, RED!") == ["a", "man", "'s", "t-shirt", "red"]
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


def test_extended_vocabulary_keeps_every_id_and_adds_frequent_new_words():
    vocab = Vocabulary.build(["a dog runs", "a cat"], min_count=1, max_length=7)
    grown = vocab.extended(["a zebra runs", "a zebra", "one okapi"], min_count=2)
    assert grown.words == vocab.words + ["zebra"] and grown.max_length == 7  # okapi: seen once
    assert grown.encode("a dog", add_markers=False) == vocab.encode("a dog", add_markers=False)
    assert grown.encode("zebra", add_markers=False) == [len(vocab)]
    assert vocab.extended(["a dog"], min_count=1).words == vocab.words
