"""The character model's lecture tools: the signals the atlas reads from text, the atlas finding a planted cell,
the coloured-text views, gradient flow over characters, and the hand-built repeated-1s RNN of the slides."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from captioner.charlm import CharLM, CharLMConfig, CharVocab
from captioner.lecture.charcells import SIGNALS, build_atlas, text_signals
from captioner.lecture.charviews import CellRef, activations, colour_html, draw_png
from captioner.lecture.repeated_ones import SLIDE_INPUT, SLIDE_OUTPUT, run
from captioner.schema import read_lm_atlas

C_CODE = """int f(int a) {
\tif (a > 1) { /* "x" { */
\t\tputs("a { b"); // if (x)
\t}
\tif (a) b = c(1);
\tc = '"'; d = 2;
}
"""


def _marks(text: str, values: np.ndarray) -> str:
    """The characters where a 0/1 signal is on."""
    return "".join(ch for ch, v in zip(text, values) if v)


def test_signals_are_read_from_the_text():
    s = text_signals(C_CODE)
    assert _marks(C_CODE, s["quote"]) == '"a { b'  # from the opening quote; the closing one is read outside
    assert _marks(C_CODE, s["comment"]) == '/* "x" { *// if (x)'
    assert _marks(C_CODE, s["if"]) == 'f (a > 1) { /* "x" { */\n\t\tputs("a { b"); // if (x)\n\tf (a) b = c(1)'
    assert _marks(C_CODE, s["paren"]) == '(int a(a > 1("a { b"(a(1'
    assert s["depth"].max() == 2 and s["depth"][-1] == 0  # braces in strings and comments do not count
    lines = C_CODE.split("\n")
    assert s["column"][len(lines[0]) - 1] == len(lines[0]) and s["column"][len(lines[0])] == 0
    assert _marks(C_CODE, s["digit"]) == "112" and not s["upper"].any()
    prose = 'He said, "don\'t go." If it rains (it may), stay.\n'
    p = text_signals(prose)
    assert _marks(prose, p["quote"]) == "\"don't go." and not p["if"].any()  # "If (" is not code's if
    assert set(SIGNALS) == set(p)


def planted_column_cell(seed: int = 0) -> tuple[CharLM, CharVocab]:
    """An LSTM whose cell 0 counts the characters since the last newline (plus one), the others random."""
    text = 'abc de\n"fg" hij {k}\n'
    vocab = CharVocab.from_text(text)
    torch.manual_seed(seed)
    model = CharLM(CharLMConfig(len(vocab), embed_dim=3, hidden_dim=6, num_layers=1)).eval()
    with torch.no_grad():
        model.embed.weight[:, :2] = torch.tensor([[float(c == "\n"), 1.0] for c in vocab.chars])
        model.embed.weight[:, 2].normal_()
        w_ih, w_hh, bias = model.cell.weight_ih_l0, model.cell.weight_hh_l0, model.cell.bias_ih_l0
        for gate in range(4):  # PyTorch's gate order: input, forget, cell, output
            w_ih[gate * 6, :], w_hh[gate * 6, :], bias[gate * 6] = 0, 0, 0
            model.cell.bias_hh_l0[gate * 6] = 0
        w_ih[0, 1] = 10.0  # input gate open
        w_ih[6, :2] = torch.tensor([-40.0, 10.0])  # forget everything at a newline, else keep
        w_ih[12, 1] = 10.0  # add tanh(10) ~ 1 every character
    return model, vocab


def test_the_atlas_finds_a_planted_column_cell_and_its_json_passes_the_schema():
    model, vocab = planted_column_cell()
    rng = np.random.default_rng(0)
    text = "".join(("".join(rng.choice(list('abc de"fg{}hijk'), size=rng.integers(2, 40))) + "\n") for _ in range(200))
    atlas = build_atlas(model, vocab, text, streams=4, source="made here")
    top = atlas["signals"]["column"]["best"][0]
    assert (top["state"], top["layer"], top["cell"]) == ("c", 0, 0) and top["r"] > 0.99
    assert all(abs(c["r"]) < 0.95 for c in atlas["signals"]["column"]["best"][1:])
    assert len(atlas["r"]["h0"]["quote"]) == 6
    data = json.loads(json.dumps(atlas))
    assert read_lm_atlas("cells.json", data, model.config) == data
    data["signals"]["column"]["best"][0]["cell"] = 6
    with pytest.raises(ValueError, match=r"signals.column.best\[0\].cell must be at least 0 and at most 5, not 6"):
        read_lm_atlas("cells.json", data, model.config)
    ref = CellRef.best_for(atlas, "column")
    values = activations(model, vocab, "ab\ncde", ref)
    np.testing.assert_allclose(values, [1, 2, 1, 2, 3, 4], atol=0.01)  # column + 1, reset by the newline


def test_coloured_text_as_html_and_png(tmp_path):
    values = np.linspace(-1, 1, 7)
    page = colour_html('a<b\n "c', values)
    assert page.count("<span") == 7 and "&lt;" in page and "<br>" in page
    assert "#3063d6" in page and "#d63026" in page  # blue at the lowest value, red at the highest
    draw_png(str(tmp_path / "cell.png"), "int a;\n\tb = 1;\n", np.linspace(0, 1, 15), "a cell")
    assert (tmp_path / "cell.png").stat().st_size > 1000


def test_the_hand_built_rnn_gives_the_slides_output():
    states, outputs = run(SLIDE_INPUT)
    assert outputs == SLIDE_OUTPUT == [0, 0, 0, 0, 1, 1, 0, 0, 1]
    assert [list(h) for h in states[3:5]] == [[1, 0, 1], [1, 1, 1]]  # [x_t, x_{t-1}, 1]
    assert run([1, 1, 1, 1])[1] == [0, 1, 1, 1] and run([1, 0, 1, 0])[1] == [0, 0, 0, 0]


def test_gradient_flow_over_characters_matches_finite_differences():
    from captioner.lecture.charflow import clipping_effect, largest_singular_values, window_gradients

    torch.manual_seed(0)
    model = CharLM(CharLMConfig(12, embed_dim=4, hidden_dim=8, num_layers=1, cell="rnn")).double()
    windows = torch.randint(1, 12, (1, 8))
    norms = window_gradients(model, windows)  # (1, 7): distances 1..7

    def log_p(delta: torch.Tensor, t: int) -> float:
        state = model.zero_state(1)
        for i in range(7):
            _, state = model.step(windows[:, i], state)
            state = (state[0] + delta,) if i == t else state
        return float(model.head(state[0][-1]).log_softmax(-1)[0, windows[0, -1]].detach())

    for t in (2, 6):  # distances 5 and 1
        fd = torch.tensor(
            [(log_p(d, t) - log_p(-d, t)) / 2e-6 for d in torch.eye(8, dtype=torch.double)[:, None, None] * 1e-6]
        )
        assert float(norms[0, 6 - t]) == pytest.approx(float(fd.norm()), rel=1e-4)
    lstm = CharLM(CharLMConfig(12, embed_dim=4, hidden_dim=8, num_layers=2))
    whole = window_gradients(lstm, torch.randint(1, 12, (3, 30)), torch.randint(1, 12, (3, 5)), ("h", "c"))
    assert whole.shape == (3, 29) and (whole[:, 0] > 0).all()
    assert len(largest_singular_values(lstm)) == 2
    rows = clipping_effect(model.float(), torch.randint(1, 12, (2, 60)), [0.5, 4.0], clip_norm=0.01)
    assert rows[1]["grad_norm"] > rows[0]["grad_norm"] and all(r["clipped_to"] <= 0.01 for r in rows)


def test_min_char_rnn_backpropagates_through_time_correctly_and_learns():
    from captioner.lecture.min_char_rnn import loss_and_gradients, train

    rng = np.random.default_rng(0)
    params = {
        "Wxh": rng.standard_normal((100, 5)) * 0.1,
        "Whh": rng.standard_normal((100, 100)) * 0.1,
        "Why": rng.standard_normal((5, 100)) * 0.1,
        "bh": np.zeros((100, 1)),
        "by": np.zeros((5, 1)),
    }
    inputs, targets, h0 = [0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 1], np.zeros((100, 1))
    _, grads, _ = loss_and_gradients(params, inputs, targets, h0, 5)
    for name, i in (("Whh", (3, 7)), ("Wxh", (10, 2)), ("by", (1, 0))):
        saved = params[name][i]
        params[name][i] = saved + 1e-5
        up = loss_and_gradients(params, inputs, targets, h0, 5)[0]
        params[name][i] = saved - 1e-5
        down = loss_and_gradients(params, inputs, targets, h0, 5)[0]
        params[name][i] = saved
        assert grads[name][i] == pytest.approx((up - down) / 2e-5, rel=1e-4, abs=1e-8)
    assert train("hello " * 200, iterations=1000, every=0) < 0.8  # the lecture's "hello", learnt


def test_the_atlas_reads_an_ssm_model_one_value_per_channel():
    """The SSM's state holds N numbers per channel: the atlas reads each channel's state summed over them, and its
    convolution window's newest input; the JSON passes the schema, and a chosen cell can be drawn."""
    torch.manual_seed(0)
    vocab = CharVocab.from_text("ab\ncd")
    model = CharLM(CharLMConfig(len(vocab), embed_dim=4, hidden_dim=4, num_layers=2, cell="ssm"))
    atlas = build_atlas(model, vocab, "ab\ncd\n" * 40, streams=2, source="made here")
    assert set(atlas["r"]) == {"conv0", "conv1", "ssm0", "ssm1"}
    assert len(atlas["r"]["ssm1"]["column"]) == 8  # expand 2 x hidden 4 channels
    assert read_lm_atlas("cells.json", json.loads(json.dumps(atlas)), model.config)["format"] == atlas["format"]
    values = activations(model, vocab, "ab\ncd", CellRef.best_for(atlas, "column"))
    assert values.shape == (5,) and np.isfinite(values).all()
