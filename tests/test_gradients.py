"""The gradient of the last word's log-probability with respect to every earlier state, against finite differences."""

from __future__ import annotations

import pytest
import torch
from synthetic import tiny_decoder

from captioner.lecture.gradients import gradient_norms, last_word_gradients
from captioner.vocab import Vocabulary


def _log_p_last(model, features, words, t, state) -> float:
    """log p(w_T) when the state after step ``t`` is replaced by ``state``, rolled forward with the decoder's own
    steps."""
    image = model.encode_image(features[None])
    inputs = [Vocabulary.start_id, *words[:-1]]
    log_probs = model.log_probs(state[0][-1], image)
    for s in range(t + 1, len(inputs)):
        log_probs, state = model.step(torch.tensor([inputs[s]]), state, image, first=False)
    return float(log_probs[0, words[-1]])


def _states(model, features, words):
    """Each step's full state (all layers, h and c), without gradients."""
    image, out = model.encode_image(features[None]), []
    state = model.initial_state(image)
    for t, token in enumerate([Vocabulary.start_id, *words[:-1]]):
        _, state = model.step(torch.tensor([token]), state, image, first=t == 0)
        out.append(state)
    return out


def _numeric_gradients(model, features, words, part: int, eps: float = 1e-6) -> torch.Tensor:
    """∂ log p(w_T) / ∂(state part ``part`` after step t) ``(T, hidden)`` by central differences, one unit at a time."""
    with torch.no_grad():
        states = _states(model, features, words)
        numeric = torch.zeros(len(words), model.config.hidden_dim, dtype=torch.float64)
        for t, state in enumerate(states):
            for i in range(model.config.hidden_dim):
                moved = []
                for sign in (1, -1):
                    value = state[part].clone()
                    value[-1, 0, i] += sign * eps
                    moved.append(_log_p_last(model, features, words, t, (*state[:part], value, *state[part + 1 :])))
                numeric[t, i] = (moved[0] - moved[1]) / (2 * eps)
    return numeric


@pytest.mark.parametrize(
    "cell,image_input", [("lstm", "every_step"), ("rnn", "every_step"), ("rnn", "first_step"), ("lstm", "init_state")]
)
def test_last_word_gradients_agree_with_finite_differences(cell, image_input):
    model = tiny_decoder(12, cell=cell, image_input=image_input, seed=3).double().eval()
    features = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    words = [4, 7, 5, 9, 6, 4]
    grads = last_word_gradients(model, features, words)
    assert grads.shape == (len(words), model.config.hidden_dim)
    torch.testing.assert_close(grads, _numeric_gradients(model, features, words, part=0), rtol=1e-5, atol=1e-8)
    assert grads[0].abs().sum() > 0  # the first state matters: the test compared more than zeros
    torch.testing.assert_close(gradient_norms(model, features, words), grads.norm(dim=1))


def test_the_lstm_cell_state_gradient_agrees_with_finite_differences_and_joins_h_in_the_whole_state_norm():
    model = tiny_decoder(12, cell="lstm", seed=3).double().eval()
    features = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    words = [4, 7, 5, 9, 6, 4]
    grads = last_word_gradients(model, features, words, kind="c")
    torch.testing.assert_close(grads, _numeric_gradients(model, features, words, part=1), rtol=1e-5, atol=1e-8)
    assert grads[-1].abs().sum() == 0 and grads[0].abs().sum() > 0  # w_T is read from h alone; c carries the past
    h = last_word_gradients(model, features, words, kind="h")
    torch.testing.assert_close(
        gradient_norms(model, features, words, kinds=("h", "c")),
        (h.square().sum(dim=1) + grads.square().sum(dim=1)).sqrt(),
    )
    with pytest.raises(ValueError, match="kind must be one of h"):
        last_word_gradients(tiny_decoder(12, cell="rnn"), torch.randn(16), [5], kind="c")


def test_a_one_word_caption_has_one_state_and_an_empty_one_is_refused():
    model = tiny_decoder(12)
    assert last_word_gradients(model, torch.randn(16), [5]).shape == (1, 16)
    with pytest.raises(ValueError, match="at least one word"):
        last_word_gradients(model, torch.randn(16), [])
