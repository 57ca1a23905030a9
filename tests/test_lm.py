"""The character model: truncated BPTT carries the state exactly, training resumes bit for bit, sampling is
seeded, scoring carries the state, and bad text is a one-line error. Every text is made here (no ../shared)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from captioner.charlm import CharLM, CharLMConfig, CharVocab, SampleConfig, evaluate, sample, score_text
from captioner.checkpoint import load_checkpoint, load_state
from captioner.data.text import read_documents, split_documents
from captioner.pretrained import load_lm
from captioner.train.lm import LMTrainConfig, train_lm

WORDS = "the quick brown fox jumps over a lazy dog while 3 cats sleep".split()


def make_text(lines: int = 400, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(lines)) + "\n"


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(make_text())
    return path


def tiny(cell: str = "lstm", layers: int = 2) -> tuple[CharLM, CharVocab]:
    torch.manual_seed(0)
    vocab = CharVocab.from_text(make_text())
    return CharLM(CharLMConfig(len(vocab), embed_dim=8, hidden_dim=16, num_layers=layers, cell=cell)).eval(), vocab


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "captioner.cli.main", *args], capture_output=True, text=True)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_two_chunks_of_50_with_the_state_carried_are_one_chunk_of_100(cell):
    model, vocab = tiny(cell)
    ids = vocab.encode(make_text()[:101])[None]  # (1, 101)
    whole, _ = model.loss(ids)
    first, state = model.loss(ids[:, :51])
    second, _ = model.loss(ids[:, 50:], state)
    torch.testing.assert_close((first + second) / 2, whole, rtol=1e-5, atol=1e-6)
    fresh, _ = model.loss(ids[:, 50:])  # without the carried state the second half scores differently
    assert abs(float(fresh.detach() - second.detach())) > 1e-4
    logits, _ = model(ids[:, :100])
    a, s = model(ids[:, :50])
    b, _ = model(ids[:, 50:100], s)
    torch.testing.assert_close(torch.cat([a, b], 1), logits, rtol=1e-5, atol=1e-5)


def test_the_step_by_step_recurrence_is_the_fused_one():
    model, vocab = tiny()
    ids = vocab.encode("the lazy dog")
    fused, _ = model(ids[None])
    state, steps = model.zero_state(1), []
    for i in ids:
        logits, state = model.step(i[None], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), fused, rtol=1e-5, atol=1e-5)


def test_scoring_with_one_stream_is_the_loss_with_the_state_carried():
    model, vocab = tiny()
    ids = vocab.encode(make_text()[:300])
    total, count = evaluate(model, ids, streams=1, chunk=37)
    loss, _ = model.loss(ids[None])
    assert count == 299
    assert total / count == pytest.approx(loss.item(), rel=1e-5)
    several, _ = evaluate(model, ids, streams=4)
    assert several / count == pytest.approx(total / count, rel=0.05)  # 3 characters lose their history


def test_sampling_is_seeded_and_streams_the_prime_first():
    model, vocab = tiny()
    draw = lambda seed: list(sample(model, vocab, SampleConfig(prime="the ", length=80, seed=seed)))
    assert draw(3) == draw(3)
    assert draw(3) != draw(4)
    pieces = draw(3)
    assert pieces[0] == "the " and len(pieces) == 81 and all(len(p) == 1 for p in pieces[1:])
    assert "\ufffd" not in "".join(pieces)
    greedy = lambda seed: "".join(sample(model, vocab, SampleConfig(prime="a", length=30, seed=seed, top_k=1)))
    assert greedy(1) == greedy(2)  # top-k 1 is greedy: the seed no longer matters


def _config(text: Path, out: Path, **kw) -> LMTrainConfig:
    settings = dict(
        text=(str(text),),
        out=str(out),
        hidden_dim=16,
        embed_dim=8,
        num_layers=2,
        batch_size=4,
        bptt=10,
        epochs=3,
        epoch_chars=400,
        sample_every=0,
        save_every=4,
        dropout=0.1,
    )
    return LMTrainConfig(**{**settings, **kw})


@pytest.mark.parametrize("batches", ["streams", "chunks"])
def test_a_killed_and_resumed_run_matches_an_uninterrupted_one(text_file, tmp_path, monkeypatch, batches):
    train_lm(_config(text_file, tmp_path / "full", batches=batches))
    real_step, calls = torch.optim.Adam.step, []

    def dying_step(self, *a, **k):
        calls.append(1)
        if len(calls) == 15:  # epoch 2 of 3, after its mid-epoch checkpoint (10 steps an epoch)
            raise KeyboardInterrupt("killed")
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_lm(_config(text_file, tmp_path / "cut", batches=batches))
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    state = load_state(tmp_path / "cut" / "last")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 4)
    assert bool(state["task"]["state"]) == (batches == "streams")  # the carried state is in the checkpoint
    train_lm(_config(text_file, tmp_path / "cut", batches=batches), resume=True)
    full, _ = load_checkpoint(tmp_path / "full" / "last")
    resumed, _ = load_checkpoint(tmp_path / "cut" / "last")
    for k in full:
        torch.testing.assert_close(full[k], resumed[k], rtol=0, atol=0)
    history = lambda run: [h["val_loss"] for h in load_state(tmp_path / run / "last")["history"]]
    assert history("cut") == history("full")


def test_trained_weights_load_sample_and_score_from_the_command_line(text_file, tmp_path):
    done = run(
        "lm",
        "train",
        "--text",
        str(text_file),
        "--out",
        str(tmp_path / "run"),
        "--hidden-dim",
        "24",
        "--num-layers",
        "1",
        "--batch-size",
        "8",
        "--bptt",
        "20",
        "--epochs",
        "2",
        "--sample-every",
        "20",
        "--sample-length",
        "30",
        "--lr",
        "0.01",
        "-q",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["val_loss"] < 2.5
    assert "--- sample at step 20 ---" in done.stderr
    weights = str(tmp_path / "run" / "best")
    lm = load_lm(weights)
    assert lm.model.config.hidden_dim == 24 and lm.vocab.chars[0] == "\ufffd"
    first = run("lm", "sample", "--weights", weights, "--prime", "the", "--length", "50", "--seed", "7")
    again = run("lm", "sample", "--weights", weights, "--prime", "the", "--length", "50", "--seed", "7")
    assert first.returncode == 0 and first.stdout == again.stdout and first.stdout.startswith("the")
    scored = run(
        "lm",
        "eval",
        "--weights",
        weights,
        str(text_file),
        "--held-out",
        "0.1",
        "--json",
        str(tmp_path / "score.json"),
        "-q",
    )
    assert scored.returncode == 0, scored.stderr
    score = json.loads((tmp_path / "score.json").read_text())
    assert score["bits_per_char"] == pytest.approx(score["nats_per_char"] / 0.693147, rel=1e-4)
    held_out = split_documents(read_documents([text_file]), 0.1)[1]
    assert score["chars"] == len(held_out) - 1
    assert score["nats_per_char"] == pytest.approx(score_text(lm.model, lm.vocab, held_out).nats, abs=1e-5)


BAD_TEXT = {
    "empty": (b"", "empty"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    "latin-1": ("caf\u00e9 cr\u00e8me\n".encode("latin-1") * 50, "not UTF-8 (byte 3 is 0xe9)"),
    "tiny": (b"too short for a batch\n", "fewer than one batch"),
}


@pytest.mark.parametrize("case", sorted(BAD_TEXT))
def test_bad_text_is_a_one_line_error(tmp_path, case):
    data, message = BAD_TEXT[case]
    (tmp_path / "t.txt").write_bytes(data)
    done = run("lm", "train", "--text", str(tmp_path / "t.txt"), "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_a_folder_without_text_and_a_missing_path_are_one_line_errors(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "image.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "folder" / "empty.txt").write_text("")
    done = run("lm", "train", "--text", str(tmp_path / "folder"), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "a folder with no UTF-8 text files" in done.stderr.splitlines()[-1]
    assert sum("skipped" in line for line in done.stderr.splitlines()) == 2
    done = run("lm", "train", "--out", str(tmp_path / "run"))
    assert (
        done.returncode == 2
        and done.stderr.strip() == "captioner: error: no text: give --text FILE_OR_DIR at least once"
    )
    done = run("lm", "eval", "--weights", str(tmp_path / "nothing"), str(tmp_path / "folder"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def test_a_folder_splits_at_a_file_boundary_and_keeps_a_byte_order_mark_out(tmp_path):
    for name, text in (("a.txt", "a" * 80), ("b.txt", "b" * 15), ("c.txt", "c" * 5)):
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" * (name == "a.txt") + text.encode())
    documents = read_documents([tmp_path])
    assert [d.text[:1] for d in documents] == ["a", "b", "c"] and len(documents[0].text) == 80
    train, val = split_documents(documents, 0.1)  # 10% of 100 characters: the cut moves to c.txt
    assert (train, val) == ("a" * 80 + "b" * 15, "c" * 5)
    assert split_documents(documents[:1], 0.1) == ("a" * 72, "a" * 8)


def test_the_atlas_command_and_the_app_tab_on_trained_weights(text_file, tmp_path, monkeypatch):
    done = run(
        "lm",
        "train",
        "--text",
        str(text_file),
        "--out",
        str(tmp_path / "run"),
        "--hidden-dim",
        "12",
        "--num-layers",
        "1",
        "--batch-size",
        "8",
        "--bptt",
        "20",
        "--epochs",
        "1",
        "--sample-every",
        "0",
        "-q",
    )
    assert done.returncode == 0, done.stderr
    weights = tmp_path / "run" / "best"
    done = run(
        "lm",
        "atlas",
        "--weights",
        str(weights),
        "--write",
        "--streams",
        "4",
        "--png",
        str(tmp_path / "cell.png"),
        "--signal",
        "column",
        "-q",
    )  # the held-out text its config names
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2].startswith("column   r ") and (tmp_path / "cell.png").exists()
    lm = load_lm(weights)  # cells.json written and checked
    assert set(lm.atlas["signals"]) >= {"quote", "comment", "column", "depth", "if"}

    from captioner.app import lm_tab

    monkeypatch.setattr(lm_tab, "_model", lambda name: lm)
    pages = list(lm_tab.lm_sample("any", "the", 30, 0.8, 5, "column"))
    assert len(pages) >= 3 and pages[-1][0].count("<span") == 33  # the prime's 3 characters and 30 drawn
    assert "best **column** cell" in pages[-1][1]
    again = list(lm_tab.lm_sample("any", "the", 30, 0.8, 5, "column"))
    assert again[-1] == pages[-1]
    with pytest.raises(Exception, match="length must be at most 2000"):
        list(lm_tab.lm_sample("any", "the", 5000, 0.8, 5, "column"))


def test_shipped_character_models_load_with_their_atlas_and_card():
    from captioner.pretrained import list_weights

    entries = list_weights("lm")
    assert entries, "no character-model entries"
    for entry in entries:
        if not (entry.path / "config.json").exists():
            pytest.skip(f"{entry.name}: no shipped weights")
        lm = load_lm(entry.name)
        assert lm.entry == entry and lm.atlas["format"] == "captioner character cell atlas"
        card = (entry.path / "README.md").read_text()
        assert entry.recipe.split(" && ")[0] in card.replace("\\\n", "").replace("  ", " ")
        size = sum(f.stat().st_size for f in entry.path.iterdir())
        assert size < 20 * 2**20
