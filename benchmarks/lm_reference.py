"""A plain PyTorch reference loop for the character model: ``nn.LSTM``, random chunks from a zero state, Adam at a
fixed rate, no clipping, no schedule. What `captioner lm train` is compared with at equal wall time.

    python benchmarks/lm_reference.py --text ../shared/data/text/tinyshakespeare/input.txt --minutes 10 \\
        --hidden 512 --layers 2 --batch-size 64 --bptt 100 --lr 2e-3 --threads 1 [--report-every 2.5]

The text is split as `captioner lm train --val-fraction 0.1` splits it (the last 10%), and the validation loss is
measured by the same function as the trainer's (:func:`captioner.charlm.evaluate`, 16 streams, the state carried:
the reference's weights are copied into a :class:`~captioner.charlm.CharLM`, whose parameters have the same
names). Every ``--report-every`` minutes (wall time, validation included) it prints the minutes, the characters
trained on, the training throughput and the validation loss; the last line is the final figure.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from captioner.charlm import CharLM, CharLMConfig, CharVocab, evaluate
from captioner.data.text import read_documents, split_documents


class Reference(nn.Module):
    """Embedding, nn.LSTM, Linear: the textbook character model."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.cell = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.cell(self.embed(ids))[0])


def validation(model: Reference, config: CharLMConfig, val: torch.Tensor) -> float:
    scored = CharLM(config)
    scored.load_state_dict(model.state_dict())
    total, count = evaluate(scored, val, streams=16)
    model.train()
    return total / count


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", required=True)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--report-every", type=float, default=2.5, help="minutes between validations (default: 2.5)")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--bptt", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_text, val_text = split_documents(read_documents([args.text]), 0.1)
    vocab = CharVocab.from_text(train_text)
    train, val = vocab.encode(train_text), vocab.encode(val_text)
    config = CharLMConfig(len(vocab), args.embed, args.hidden, args.layers, "lstm")
    model = Reference(len(vocab), args.embed, args.hidden, args.layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    started, chars, train_seconds, next_report = time.time(), 0, 0.0, args.report_every
    print("minutes  chars_trained  train_chars_per_s  val_nats_per_char")
    while True:
        step_start = time.time()
        starts = torch.randint(len(train) - args.bptt - 1, (args.batch_size,))
        chunk = torch.stack([train[s : s + args.bptt + 1] for s in starts])  # (B, bptt + 1)
        logits = model(chunk[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        chars += args.batch_size * args.bptt
        train_seconds += time.time() - step_start
        minutes = (time.time() - started) / 60
        if minutes >= next_report or minutes >= args.minutes:
            val_loss = validation(model, config, val)
            elapsed = (time.time() - started) / 60
            print(f"{elapsed:7.2f}  {chars:13,d}  {chars / train_seconds:17,.0f}  {val_loss:17.4f}", flush=True)
            next_report += args.report_every
            if minutes >= args.minutes:
                break


if __name__ == "__main__":
    main()
