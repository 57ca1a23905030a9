"""The selective state-space cell (captioner.ssm): the chunked parallel scan agrees with the one-step recurrence,
a carried state matches one long pass, padded steps are skipped, it learns a copy task, it decodes captions
(seeded sampling repeats) and encodes questions, its state stays one size however long it runs, and bad settings
are one-line errors. Tiny sizes only; nothing needs ../shared."""

from __future__ import annotations

import pytest
import torch
from synthetic import tiny_decoder

from captioner.cells import build_cell, matched_hidden, parameter_count
from captioner.decoder import DecoderConfig
from captioner.decoding import DecodeConfig, decode, trace_states
from captioner.lecture.gradients import gradient_norms
from captioner.ssm import SSM, SSMConfig, scan
from captioner.vqa import VQAConfig, VQAModel

TOL = {"rtol": 1e-9, "atol": 1e-10}  # float64


def _cell(layers: int = 2, chunk: int = 3, seed: int = 0) -> SSM:
    """A float64 SSM with large step sizes (so every step's decay matters) and chunks shorter than the inputs."""
    torch.manual_seed(seed)
    config = SSMConfig(state_size=4, heads=2, conv_width=3, dt_min=0.1, dt_max=2.0, chunk=chunk)
    return SSM(5, 8, layers, config=config).double().eval()


def _steps(cell: SSM, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
    outs = []
    for t in range(x.shape[1]):
        h, state = cell.step(x[:, t], state)
        outs.append(h)
    return torch.stack(outs, 1), state


@pytest.mark.parametrize("carried", [False, True])
def test_the_parallel_scan_agrees_with_the_recurrence(carried):
    cell = _cell()
    x = torch.randn(3, 10, 5, dtype=torch.float64)  # 10 steps: three chunks of 3 and a padded one
    state = cell.zero_state(3, x)
    if carried:  # a state from earlier text
        _, state = cell.sequence(torch.randn(3, 7, 5, dtype=torch.float64))
    out, final = cell.sequence(x, state)
    stepped, stepped_final = _steps(cell, x, state)
    torch.testing.assert_close(out, stepped, **TOL)
    for a, b in zip(final, stepped_final):
        torch.testing.assert_close(a, b, **TOL)


def test_the_scan_alone_matches_its_equations():
    """scan() against h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ, y_t = h_t C_t written as a loop."""
    torch.manual_seed(1)
    n, t, heads, p, size = 2, 9, 3, 2, 4
    x, dt = torch.randn(n, t, heads, p, dtype=torch.float64), torch.rand(n, t, heads, dtype=torch.float64)
    b, c = torch.randn(n, t, size, dtype=torch.float64), torch.randn(n, t, size, dtype=torch.float64)
    a, h = -torch.rand(heads, dtype=torch.float64) * 3, torch.randn(n, heads, p, size, dtype=torch.float64)
    y, last = scan(x, dt, a, b, c, h, chunk=4)
    for s in range(t):
        h = (dt[:, s] * a).exp()[..., None, None] * h + (x[:, s] * dt[:, s, :, None])[..., None] * b[:, s, None, None]
        torch.testing.assert_close(y[:, s], (h * c[:, s, None, None]).sum(-1), **TOL)  # (n, heads, P)
    torch.testing.assert_close(last, h, **TOL)


def test_a_carried_state_matches_one_long_sequence():
    cell = _cell(seed=2)
    x = torch.randn(2, 11, 5, dtype=torch.float64)
    whole, whole_state = cell.sequence(x)
    first, state = cell.sequence(x[:, :4])  # a cut inside a chunk
    second, state = cell.sequence(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, **TOL)
    for a, b in zip(state, whole_state):
        torch.testing.assert_close(a, b, **TOL)


def test_padded_steps_are_skipped():
    cell = _cell(seed=3)
    x = torch.randn(3, 8, 5, dtype=torch.float64)
    lengths = torch.tensor([8, 2, 5])
    out, state = cell.sequence(x, lengths=lengths)
    for i, length in enumerate(lengths.tolist()):
        alone, alone_state = cell.sequence(x[i : i + 1, :length])
        torch.testing.assert_close(out[i, :length], alone[0], **TOL)
        assert not out[i, length:].any()  # zero past the end, as a packed LSTM gives
        for a, b in zip(state, alone_state):
            torch.testing.assert_close(a[:, i], b[:, 0], **TOL)


def test_it_learns_to_copy_a_symbol_from_steps_ago():
    """Predict the symbol of 3 steps before, further back than its convolution (2 steps) sees: the state must carry
    it. 100 small steps take it well below chance (ln 4 = 1.39; about 0.8 here)."""
    torch.manual_seed(0)
    symbols, delay = 4, 3
    embed = torch.nn.Embedding(symbols, 16)
    cell = SSM(16, 16, 1, config=SSMConfig(state_size=8, heads=4, conv_width=2))
    head = torch.nn.Linear(16, symbols)
    optimizer = torch.optim.Adam([*embed.parameters(), *cell.parameters(), *head.parameters()], lr=2e-2)
    losses = []
    for _ in range(100):
        x = torch.randint(symbols, (32, 12))  # (N, T)
        out, _ = cell.sequence(embed(x))  # (N, T, 16)
        loss = torch.nn.functional.cross_entropy(head(out[:, delay:]).flatten(0, 1), x[:, :-delay].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 1.1, losses[-10:]


def test_the_state_is_one_size_however_long_it_runs():
    """Decoding memory is flat in the length: after 300 steps the state is as big as after 1."""
    cell = build_cell("ssm", 6, 8).eval()
    state = cell.zero_state(2)
    sizes = []
    with torch.inference_mode():
        for t in range(300):
            _, state = cell.step(torch.randn(2, 6), state)
            if t in (0, 299):
                sizes.append([s.shape for s in state])
    assert sizes[0] == sizes[1]


def test_the_caption_decoder_takes_it():
    model = tiny_decoder(vocab_size=20, cell="ssm", seed=5)
    feats = torch.randn(2, 16)
    tokens = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])  # <start> ... <end>, padded
    logits = model(feats, tokens, torch.tensor([4, 2]))
    assert logits.shape == (6, 20)
    logits.logsumexp(-1).sum().backward()  # trains
    for method in ("greedy", "beam"):
        assert all(len(h) == 1 for h in decode(model, feats, DecodeConfig(method=method)))
    a = decode(model, feats, DecodeConfig(method="sample", seed=1, temperature=2.0))
    b = decode(model, feats, DecodeConfig(method="sample", seed=1, temperature=2.0))
    assert [h[0].tokens for h in a] == [h[0].tokens for h in b]  # seeded sampling repeats
    traced = trace_states(model, feats[0], [5, 6, 7])
    assert set(traced) == {"h"} and traced["h"].shape == (4, 16)  # h: the top layer's output, as the atlas reads it
    norms = gradient_norms(model, feats[0], [5, 6, 7, 9])
    assert norms.shape == (4,) and norms[-1] > 0  # ‖∂ log p(w_T)/∂ ssm state‖, distance 1 included


def test_the_vqa_question_encoder_takes_it_and_the_classic_vector_is_unchanged():
    model = VQAModel(
        VQAConfig(
            vocab_size=12, num_answers=5, feature_dim=8, embed_dim=6, hidden_dim=8, cell="ssm", fused_dim=4, mlp_dim=4
        )
    )
    q = model.encode_question(torch.tensor([[3, 4, 5], [6, 0, 0]]), torch.tensor([3, 1]))
    assert q.shape == (2, 4)
    lstm = build_cell("lstm", 3, 4, 2)
    _, state = lstm.sequence(torch.randn(2, 5, 3))  # the formula the shipped VQA weights were trained with:
    assert torch.equal(lstm.summary(state), torch.cat(state, dim=0).transpose(0, 1).reshape(2, -1))
    assert lstm.summary_size == 2 * 2 * 4


def test_equal_parameter_counts_are_one_call():
    hidden = matched_hidden("ssm", "lstm", 32, 64, num_layers=2)
    ratio = parameter_count("ssm", 32, hidden, 2) / parameter_count("lstm", 32, 64, 2)
    assert 0.9 < ratio < 1.1


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"state_size": 0}, "state_size must be at least 1"),
        ({"dt_min": 0.5, "dt_max": 0.1}, "dt_min (0.5) must not exceed dt_max (0.1)"),
        ({"conv_width": 0}, "conv_width must be at least 1"),
    ],
)
def test_bad_settings_are_one_line_errors(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        SSMConfig(**changes)
    assert "\n" not in str(e.value)


def test_the_image_cannot_set_an_ssm_state():
    with pytest.raises(ValueError, match="with cell ssm use every_step or first_step") as e:
        DecoderConfig(20, 16, cell="ssm", image_input="init_state")
    assert "\n" not in str(e.value)
