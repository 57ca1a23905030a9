"""The cell atlas on the tiny test model, with one cell planted to count positions and one to fire after a word."""

from __future__ import annotations

import torch
from synthetic import tiny_decoder

from captioner.lecture.atlas import POSITION_R, build_atlas, ranked
from captioner.vocab import SPECIALS, Vocabulary

WORDS = ["a", "red", "dog", "on", "grass", "runs", "the", "ball"]  # ids 4..11
COUNTER, ON_CELL = 5, 9  # the planted cells
ON = 4 + WORDS.index("on")


def _planted_model():
    """The tiny LSTM (16 cells) with c[COUNTER] = t + 1 after t words (input and forget gates open, g = 1) and
    c[ON_CELL] = 1 just after reading "on", else 0 (forget gate shut, g reads one embedding dimension only that
    "on" has)."""
    model = tiny_decoder(len(SPECIALS) + len(WORDS), seed=1).eval()
    hidden, rnn = model.config.hidden_dim, model.rnn
    gate = lambda g, cell: g * hidden + cell  # PyTorch's gate order: i, f, g, o
    with torch.no_grad():
        model.embed.weight[:, 0] = 0.0
        model.embed.weight[ON, 0] = 3.0
        for cell, (i, f, g) in {COUNTER: (20.0, 20.0, 20.0), ON_CELL: (20.0, -20.0, 0.0)}.items():
            for row, bias in zip((gate(0, cell), gate(1, cell), gate(2, cell)), (i, f, g)):
                rnn.weight_ih_l0[row] = 0.0
                rnn.weight_hh_l0[row] = 0.0
                rnn.bias_ih_l0[row], rnn.bias_hh_l0[row] = bias, 0.0
        rnn.weight_ih_l0[gate(2, ON_CELL), 0] = 10.0  # g = tanh(10 * x_0): 1 for "on", 0 for the other words
    return model


def test_the_planted_position_cell_is_labelled_position_tracking_and_the_word_cell_by_its_word():
    generator = torch.Generator().manual_seed(0)
    captions = [
        torch.randint(4, 4 + len(WORDS), (int(n),), generator=generator).tolist()
        for n in torch.randint(2, 12, (300,), generator=generator)
    ]
    features = torch.randn(len(captions), 16, generator=generator)
    vocab = Vocabulary([*SPECIALS, *WORDS])
    atlas = build_atlas(_planted_model(), features, captions, vocab, batch_size=64)

    assert atlas["captions"] == 300 and atlas["steps"] == sum(len(c) + 1 for c in captions)
    cells = atlas["cells"]["c"]
    assert len(cells) == 16 and set(atlas["cells"]) == {"c", "h"}
    counter = cells[COUNTER]
    assert counter["tracks"] == "position" and counter["position_r"] > 0.99
    assert counter["label"].startswith("position")
    assert ranked(cells, "position")[0] == COUNTER and COUNTER not in ranked(cells, "word")

    on = cells[ON_CELL]
    assert on["tracks"] == "word" and abs(on["position_r"]) < POSITION_R
    assert on["after"][0][0] == "on" and on["label"].startswith(("after on", "after prepositions: on"))
    assert ranked(cells, "word")[0] == ON_CELL  # the most word-selective cell of all


def test_the_atlas_command_reports_bad_weights_in_one_line(tmp_path, capsys):
    from captioner.cli.main import main

    assert main(["atlas", "--weights", str(tmp_path / "nope"), "--data", f"flickr8k:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("captioner: error: no caption weights in") and err.count("\n") == 1
