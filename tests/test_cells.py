"""The recurrent cells (captioner.cells): the one-step recurrence agrees with the fused sequence pass (and with
itself from a precomputed input term), a state carried across chunks matches one long pass, padded steps are
skipped, and bad kinds are one-line errors."""

import pytest
import torch

from captioner.cells import CELLS, build_cell, state_kinds


@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("layers", [1, 2])
def test_steps_agree_with_the_fused_sequence_pass(kind, layers):
    torch.manual_seed(0)
    cell = build_cell(kind, 5, 7, layers).eval()
    x = torch.randn(3, 6, 5)  # (N, T, input)
    out, final = cell.sequence(x, cell.zero_state(3))
    state = cell.zero_state(3)
    for t in range(6):
        h, state = cell.step(x[:, t], state)
        torch.testing.assert_close(h, out[:, t], rtol=1e-5, atol=1e-6)
    assert len(final) == len(state_kinds(kind)) and final[0].shape[:2] == (layers, 3)  # the SSM's: (.., heads, P, N)
    for a, b in zip(final, state):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("layers", [1, 2])
def test_a_step_from_a_precomputed_input_term_is_the_same_step(kind, layers):
    """Sampling looks the first layer's input term up per character (``input_term`` of the embedding's rows) and
    steps with ``projected=True``: the same outputs and states as stepping from the input."""
    torch.manual_seed(2)
    cell = build_cell(kind, 5, 6, layers).eval()
    table = torch.randn(9, 5)  # a 9-character embedding
    terms = cell.input_term(table)  # (9, ...)
    state = projected = cell.zero_state(2)
    for ids in ([1, 4], [8, 0], [3, 3]):
        h, state = cell.step(table[ids], state)
        h_projected, projected = cell.step(terms[ids], projected, projected=True)
        torch.testing.assert_close(h_projected, h, rtol=1e-5, atol=1e-6)
        for a, b in zip(projected, state):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_carried_state_matches_one_long_sequence(kind):
    torch.manual_seed(1)
    cell = build_cell(kind, 4, 8).eval()
    x = torch.randn(2, 10, 4)
    whole, _ = cell.sequence(x)
    first, state = cell.sequence(x[:, :4])
    second, _ = cell.sequence(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_padded_steps_are_skipped(kind):
    torch.manual_seed(2)
    cell = build_cell(kind, 3, 4).eval()
    x = torch.randn(2, 5, 3)
    _, state = cell.sequence(x, lengths=torch.tensor([5, 2]))
    _, short = cell.sequence(x[1:, :2])
    for a, b in zip(state, short):
        torch.testing.assert_close(a[:, 1:], b, rtol=1e-5, atol=1e-6)


def test_an_unknown_kind_is_a_one_line_error():
    with pytest.raises(ValueError, match="cell must be one of") as e:
        build_cell("gru", 3, 4)
    assert "\n" not in str(e.value)


def test_classic_cells_keep_pytorch_parameter_names():
    """Trained checkpoints name the weights as nn.LSTM and nn.RNN do; the cells must load them as they are."""
    assert set(dict(build_cell("lstm", 3, 4, 2).named_parameters())) == set(
        dict(torch.nn.LSTM(3, 4, 2).named_parameters())
    )
    assert set(dict(build_cell("rnn", 3, 4).named_parameters())) == {
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
    }
