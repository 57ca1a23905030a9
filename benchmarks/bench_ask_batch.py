"""Peak memory of ``captioner ask --batch`` with many questions on one image (issue 26's target: 50,000
questions under 1.5 GB of peak RSS).

Writes a CSV of ``--questions`` rows, all on one example photo, runs the real command on it in a child
process, and prints the child's peak RSS (``getrusage(RUSAGE_CHILDREN)``), its wall time and its exit code.

    python benchmarks/bench_ask_batch.py                    # 50,000 questions
    python benchmarks/bench_ask_batch.py --questions 100000 --limit-gb 1.5
"""

from __future__ import annotations

import argparse
import csv
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "what sport is this",
    "what color is the shirt",
    "how many people are there",
    "is it sunny",
    "what is the man holding",
    "where is the ball",
    "is there a dog in the image",
    "what is on the ground",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=50_000, help="rows of the CSV (default: 50000)")
    parser.add_argument(
        "--image", default=str(ROOT / "examples" / "tennis.jpg"), help="the one image (default: examples/tennis.jpg)"
    )
    parser.add_argument("--weights", help="weights entry or folder (default: the shipped weights)")
    parser.add_argument("--limit-gb", type=float, default=1.5, help="exit 1 if peak RSS exceeds this (default: 1.5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        shutil.copy(args.image, tmp / "images" / f"000000000001{Path(args.image).suffix}")
        with open(tmp / "qa.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["image_id", "question"])
            writer.writerows(["000000000001", QUESTIONS[i % len(QUESTIONS)]] for i in range(args.questions))
        cmd = [
            sys.executable,
            "-m",
            "captioner.cli.main",
            "ask",
            "--batch",
            str(tmp / "qa.csv"),
            "--images",
            str(tmp / "images"),
            "-o",
            str(tmp / "answers.csv"),
            *(["--weights", args.weights] * bool(args.weights)),
        ]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - started
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # kilobytes on Linux
        answered = 0
        if (tmp / "answers.csv").exists():
            with open(tmp / "answers.csv", newline="", encoding="utf-8") as f:
                answered = sum(1 for row in csv.DictReader(f) if row["predicted_answer"])
    print(
        f"{args.questions} questions on one image: peak RSS {peak_gb:.2f} GB, {seconds:.1f} s, exit code "
        f"{done.returncode}, {answered} answered"
    )
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
    return 1 if done.returncode or answered != args.questions or peak_gb > args.limit_gb else 0


if __name__ == "__main__":
    sys.exit(main())
