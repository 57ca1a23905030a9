"""What a new user expects of the command line (issue 26): ``--version``, ``--quiet``, several questions per
``ask`` (or a conversation on stdin), and n-best output that says what its columns are."""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys

import pytest
from conftest import EXAMPLE_IMAGE, ROOT

from captioner import __version__, progress
from captioner.cli.main import build_parser, main

IMAGE = str(EXAMPLE_IMAGE)


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_version_is_the_package_version(capsys):
    code, out, err = run(capsys, ["--version"])
    declared = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert code == 0 and out == f"captioner {declared}\n" and err == "" and __version__ == declared


# ---------------------------------------------------------------- --quiet


def test_every_command_takes_quiet():
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in subparsers.choices.items():
        assert any("--quiet" in a.option_strings for a in parser._actions), name


def test_quiet_turns_off_progress_bars_and_keeps_warnings(weights_dir, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    argv = ["caption", IMAGE, str(broken), "--weights", str(weights_dir)]
    code, out, err = run(capsys, argv)
    assert code == 1 and "captioning" in err and "skipped" in err  # the bar, and the warning
    code, quiet_out, quiet_err = run(capsys, [*argv, "--quiet"])
    assert code == 1 and quiet_out == out and "captioning" not in quiet_err
    messages = [part[part.index("captioner: ") :] for part in re.split(r"[\r\n]", err) if "captioner: " in part]
    assert quiet_err.splitlines() == messages and len(messages) == 2
    assert progress.progress_bar(3, "x", "img").disable  # every bar: training's and the feature cache's too
    run(capsys, argv)  # the next command without --quiet shows bars again
    assert not progress.progress_bar(3, "x", "img").disable


# ---------------------------------------------------------------- ask: several questions, stdin


@pytest.fixture
def vqa(has_vqa):
    if not has_vqa:
        pytest.skip("no VQA weights")


def test_one_question_prints_its_answers_alone(vqa, capsys):
    code, out, err = run(capsys, ["ask", IMAGE, "what sport is this?", "--top-k", "2"])
    lines = out.splitlines()
    assert (
        code == 0
        and err == ""
        and len(lines) == 2
        and all(re.fullmatch(r"[^\t]+\t0\.\d{4}( \(not sure\))?", x) for x in lines)
    )


def test_several_questions_each_above_its_answers_and_a_bad_one_does_not_stop_the_rest(vqa, capsys):
    questions = ["what sport is this?", "", "is it\tsunny", "what colour is the ball " * 40]
    code, out, err = run(capsys, ["ask", IMAGE, *questions, "--top-k", "2"])
    alone = run(capsys, ["ask", IMAGE, questions[0], "--top-k", "2"])[1]
    first, second, rest = out.split("\n\n")  # two answered, each followed by a blank line
    assert code == 1 and rest == ""
    assert first + "\n" == f"{questions[0]}\n{alone}"  # the question, then what it alone gets
    assert second.splitlines()[0] == "is it\\tsunny" and len(second.splitlines()) == 3  # a TAB is escaped
    assert err.splitlines() == [
        "captioner: question 2: the question is empty (it has no words)",
        f"captioner: question 4: the question is too long (200 words; at most "
        f"{err.split('at most ')[1].split(')')[0]})",
    ]


def test_questions_from_stdin(vqa, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("what sport is this?\n\nis it sunny\n"))
    code, out, err = run(capsys, ["ask", IMAGE, "-", "--top-k", "1"])
    assert code == 1 and err == "captioner: question 2: the question is empty (it has no words)\n"
    assert [block.splitlines()[0] for block in out.strip().split("\n\n")] == ["what sport is this?", "is it sunny"]
    code, _, err = run(capsys, ["ask", IMAGE, "-", "what"])
    assert code == 2 and "give - alone" in err


@pytest.mark.slow
def test_a_conversation_on_stdin_gets_each_answer_before_the_next_question(vqa):
    """One process, questions written one at a time: each answer must arrive while stdin is still open."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "captioner.cli.main", "ask", IMAGE, "-", "--top-k", "1"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for question in ("what sport is this?", "is it sunny"):
            proc.stdin.write(question + "\n")
            proc.stdin.flush()
            answer = [proc.stdout.readline() for _ in range(3)]
            assert answer[0] == question + "\n" and "\t" in answer[1] and answer[2] == "\n", answer
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0 and proc.stderr.read() == ""
    finally:
        proc.kill()


# ---------------------------------------------------------------- n-best output


def test_n_best_text_labels_its_columns_and_shows_the_ranking_score(weights_dir, capsys):
    code, out, _ = run(capsys, ["caption", IMAGE, "--weights", str(weights_dir), "--beam", "3", "--n-best", "3"])
    header, *rows = out.splitlines()
    assert code == 0 and header == "file\trank\tscore\tlog_prob\tcaption" and len(rows) == 3
    fields = [row.split("\t") for row in rows]
    assert [f[1] for f in fields] == ["1", "2", "3"]
    scores = [float(f[2]) for f in fields]
    assert scores == sorted(scores, reverse=True)  # ranked by the score shown, whatever the log-probs
    for f in fields:  # the score is the log-prob normalised by length (the shipped length penalty is 1)
        words = len(f[4].split()) + 1  # <end> counts
        assert float(f[2]) == pytest.approx(float(f[3]) / words ** _length_penalty(weights_dir), abs=2e-3)


def _length_penalty(weights_dir) -> float:
    from captioner.pipeline import Captioner

    return Captioner.from_pretrained(weights_dir, load_vqa=False).decoding.length_penalty


def test_sampled_captions_keep_the_order_they_were_drawn(weights_dir, capsys):
    flags = ["caption", IMAGE, "--weights", str(weights_dir), "--sample", "--seed", "1"]
    one = run(capsys, flags)[1]
    header, *three = run(capsys, [*flags, "--n-best", "3"])[1].splitlines()
    assert header == "file\tsample\tscore\tlog_prob\tcaption"
    assert one == f"{IMAGE}\t{three[0].split(chr(9))[4]}\n"  # the one sample is the first of three
