"""Word vocabulary shared by the caption decoder and the VQA question encoder.

Text is lowercased and split into words the way the coco-caption PTB tokenizer
splits caption text (hyphenated words stay whole, "'s" is its own token), so
what the decoder emits scores the same after evaluation tokenization. Letters and
digits of any script count as word characters ("café" is one word), which gives
the same tokens as plain ``[a-z0-9]`` on ASCII text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from .io import config_errors, read_json, write_json
from .options import MAX_CAPTION_WORDS  # torch-free, so there: `captioner caption --help` states it

if TYPE_CHECKING:
    import torch

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
VOCAB_FILE = "vocab.json"  # a vocabulary's file name beside weights
SPECIALS = (PAD, START, END, UNK)

_WORD = r"[^\W_]+(?:-[^\W_]+)*|'[^\W\d_]+"  # [^\W_]: a letter or digit; [^\W\d_]: a letter
_WORDS = re.compile(_WORD)


def tokenize_words(text: str, marks: str = "", lower: bool = True) -> list[str]:
    """The words of caption or question ``text``, lowercased, punctuation dropped: the one tokenizer of the
    models' vocabulary, and of every rule that reads captions or questions (the chat, the question generator, the
    VQA breakdown by question type). Accents are composed first (NFC), so that "é" typed as "e" plus a combining
    accent stays inside its word.

    ``marks``: punctuation characters to keep as tokens of their own, where a rule needs them (the question
    generator ends noun phrases at ``",.;:!?"``; the chat rebuilds the question from its tokens). ``lower``: False
    keeps each word as typed, for text shown back to a user."""
    text = unicodedata.normalize("NFC", text)
    pattern = re.compile(f"{_WORD}|[{re.escape(marks)}]") if marks else _WORDS
    return pattern.findall(text.lower() if lower else text)


def detokenize(words: Iterable[str]) -> str:
    """Join words into display text, re-attaching clitics such as "'s"."""
    return " ".join(words).replace(" '", "'")


def pad_ids(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists (each non-empty) to a ``<pad>``-filled ``(N, T)`` tensor and their lengths ``(N,)``."""
    import torch  # here, so that tokenizing needs no torch (the command line's start-up)

    lengths = torch.tensor([len(s) for s in seqs])
    tokens = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    return tokens, lengths


@dataclass
class Vocabulary:
    """Maps words to ids and back. Ids 0..3 are ``<pad> <start> <end> <unk>``."""

    words: list[str]
    max_length: int = MAX_CAPTION_WORDS

    def __post_init__(self) -> None:
        if tuple(self.words[:4]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self.index = {w: i for i, w in enumerate(self.words)}

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 5, max_length: int = MAX_CAPTION_WORDS) -> "Vocabulary":
        """Keep words seen at least ``min_count`` times, most frequent first."""
        counts = Counter(w for t in texts for w in tokenize_words(t))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + kept, max_length)

    def extended(self, texts: Iterable[str], min_count: int) -> "Vocabulary":
        """This vocabulary with the words of ``texts`` it lacks, seen at least ``min_count`` times, added at the
        end (most frequent first): every word it had keeps its id, so trained weights keep their rows."""
        counts = Counter(w for t in texts for w in tokenize_words(t) if w not in self.index)
        added = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return Vocabulary(self.words + added, self.max_length)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, add_markers: bool = True) -> list[int]:
        """Word ids of ``text``, cut to ``max_length`` words; unknown words map to ``<unk>``."""
        ids = [self.index.get(w, self.unk_id) for w in tokenize_words(text)[: self.max_length]]
        return [self.start_id, *ids, self.end_id] if add_markers else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words for ``ids``, stopping at ``<end>`` and skipping the other markers."""
        out = []
        for i in ids:
            if i == self.end_id:
                break
            if i not in (self.pad_id, self.start_id):
                out.append(self.words[i])
        return out

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (``vocab.json`` beside weights: ``{"max_length": ..., "words": [...]}``),
        atomically: the one writer of that file, so a run killed mid-save leaves the old one whole."""
        write_json(path, {"max_length": self.max_length, "words": self.words})

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        """A saved vocabulary; ValueError naming the file, in one line, when it is not one."""
        data = read_json(path)
        with config_errors(path):
            return cls(list(data["words"]), int(data["max_length"]))
