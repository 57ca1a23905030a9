"""The caption decoder: the fused teacher-forced forward, and where the image enters the recurrence."""

from __future__ import annotations

import pytest
import torch
from synthetic import tiny_decoder


@pytest.mark.parametrize(
    "cell,image_input,attention",
    [(cell, mode, False) for cell in ["lstm", "rnn"] for mode in ["every_step", "first_step", "init_state"]]
    + [("lstm", "every_step", True), ("rnn", "init_state", True)],
)
def test_fused_forward_matches_stepwise_decoding(cell, image_input, attention):
    """The one-call teacher-forced forward and the step-by-step decoder compute the same model."""
    model = tiny_decoder(cell=cell, image_input=image_input, attention=attention).eval()
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
    model = tiny_decoder(image_input="init_state").eval()
    with torch.no_grad():
        model.init_state.weight.mul_(1000)  # what many Adam steps did to a plain tanh(W v)
        model.init_state.bias.add_(5)
    a, b = (model.initial_state(model.encode_image(torch.rand(1, 16))) for _ in range(2))
    for x, y in zip(a, b):
        assert x.abs().max() < 0.999 and y.abs().max() < 0.999  # not saturated...
        assert (x - y).abs().max() > 0.1  # ...and different images start from different states


def test_first_step_image_input_does_not_grow_with_the_image_vector():
    """A trained v grows large; seen only at step 0, it would saturate the gates the same way for every image."""
    model = tiny_decoder(image_input="first_step").eval()
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
    plain, attending = tiny_decoder().eval(), tiny_decoder(attention=True).eval()
    torch.testing.assert_close(plain(feats, tokens, lengths), plain(shuffled, tokens, lengths))
    assert not torch.allclose(attending(feats, tokens, lengths), attending(shuffled, tokens, lengths))


def test_image_enters_every_step_only_in_every_step_mode():
    feats, other = torch.randn(1, 16), torch.randn(1, 16)
    tokens, lengths = torch.tensor([[1, 5, 6, 2]]), torch.tensor([3])
    every, first = tiny_decoder(image_input="every_step").eval(), tiny_decoder(image_input="first_step").eval()
    # Changing the image changes every step's logits in both modes (through the state in first_step)...
    assert not torch.allclose(every(feats, tokens, lengths)[2], every(other, tokens, lengths)[2])
    # ...but in first_step mode the image input weights see v only at t=0.
    first.rnn.weight_ih_l0.data[:, 8:] = 0  # cut the image columns: the image no longer matters at all
    torch.testing.assert_close(first(feats, tokens, lengths), first(other, tokens, lengths))
