"""Self-critical sequence training (Rennie et al. 2017): the caption decoder samples, and CIDEr-D against the
image's human captions is the reward, each sample's baseline the mean reward of the other samples of its image."""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Sequence

import torch

from ..decoder import CaptionDecoder
from ..decoding import mask_special_tokens, sample_words
from ..vocab import Vocabulary


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


class CiderReward:
    """CIDEr-D of a caption against its image's references, as the reward of self-critical training.

    Document frequencies come from the whole training set (Rennie et al. 2017), not from the batch,
    which is why this is not pycocoevalcap's scorer; evaluation always uses pycocoevalcap.
    """

    def __init__(self, references: Sequence[Sequence[Sequence[str]]], n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        self.df: Counter = Counter()
        for refs in references:
            self.df.update({g for r in refs for g in _ngrams(r, n)})
        self.log_images = math.log(len(references))
        self.refs = [[self._vector(r) for r in refs] for refs in references]

    def _vector(self, words: Sequence[str]):
        vec = [dict() for _ in range(self.n)]
        for g, tf in _ngrams(words, self.n).items():
            vec[len(g) - 1][g] = tf * (self.log_images - math.log(max(1.0, self.df[g])))
        norms = [math.sqrt(sum(x * x for x in v.values())) for v in vec]
        return vec, norms, len(words)

    def __call__(self, image: int, words: Sequence[str]) -> float:
        hyp, hyp_norms, hyp_len = self._vector(words)
        total = 0.0
        for ref, ref_norms, ref_len in self.refs[image]:
            penalty = math.exp(-((hyp_len - ref_len) ** 2) / (2 * self.sigma**2))
            for k in range(self.n):
                if hyp_norms[k] and ref_norms[k]:
                    dot = sum(min(x, ref[k].get(g, 0.0)) * ref[k].get(g, 0.0) for g, x in hyp[k].items())
                    total += penalty * dot / (hyp_norms[k] * ref_norms[k])
        return 10.0 * total / (self.n * len(self.refs[image]))


def scst_loss(
    model: CaptionDecoder,
    feats: torch.Tensor,
    images: Sequence[int],
    reward: Callable[[int, Sequence[str]], float],
    vocab: Vocabulary,
    samples: int,
) -> tuple[torch.Tensor, float]:
    """Self-critical policy-gradient loss for a batch of images; also returns the mean reward.

    Each image gets ``samples`` sampled captions; a caption's baseline is the mean reward of the
    other samples of the same image (Luo 2020), so no greedy decode is needed. Words are drawn as
    decoding draws them (:func:`sample_words`, never a marker or ``<unk>``), but with gradients.
    """
    image = model.encode_image(feats).repeat_interleave(samples)  # n = B * samples rows
    n = len(image)
    state = model.initial_state(image)
    prev = torch.full((n,), Vocabulary.start_id, dtype=torch.long)  # (n,)
    alive = torch.ones(n, dtype=torch.bool)  # (n,) not yet past <end>
    log_prob_sum, words = torch.zeros(n), [[] for _ in range(n)]
    for t in range(vocab.max_length + 1):
        log_probs, state = model.step(prev, state, image, first=t == 0)
        log_probs = mask_special_tokens(log_probs)  # (n, vocab)
        if t == vocab.max_length:  # out of room: the only choice left is <end>
            word = torch.full((n,), Vocabulary.end_id, dtype=torch.long)
        else:
            word = sample_words(log_probs.detach().exp(), torch.rand(n, 1))  # (n,)
        log_prob_sum = log_prob_sum + log_probs.gather(1, word[:, None])[:, 0] * alive
        for i in alive.nonzero()[:, 0].tolist():
            if word[i] != Vocabulary.end_id:
                words[i].append(vocab.words[word[i]])
        alive = alive & (word != Vocabulary.end_id)
        prev = word
        if not alive.any():
            break
    rewards = torch.tensor([reward(images[i // samples], w) for i, w in enumerate(words)]).view(-1, samples)
    baseline = (rewards.sum(1, keepdim=True) - rewards) / (samples - 1)  # (B, samples) leave-one-out means
    advantage = (rewards - baseline).view(-1)
    return -(advantage * log_prob_sum).mean(), rewards.mean().item()
