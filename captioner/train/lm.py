"""Training the character model by truncated backpropagation through time, on the shared loop.

    captioner lm train --text ../shared/data/text/tinyshakespeare --out runs/lm

:class:`LMTask` plugs the character model (:mod:`captioner.charlm`) into :func:`captioner.train.loop.fit`, which
brings Adam, the cosine schedule, clipping with logged norms, checkpoints and exact ``--resume``. Two ways to cut
the text into batches (``--batches``):

- ``streams`` (char-rnn's): the training text is cut into ``batch_size`` contiguous streams, one per batch row,
  read ``bptt`` characters at a time. The state after one chunk is the start of the next (detached: the gradient
  stops at the chunk's edge, the state does not), so the model sees context far longer than ``bptt``. Each epoch
  starts from a zero state, at a random offset below ``bptt`` so the chunk edges move;
- ``chunks``: random chunks of ``bptt + 1`` characters, each read from a zero state.

The carried state is part of ``last/``'s training state, so a run killed mid-epoch resumes bit for bit. Every
``sample_every`` steps the log shows a sample (the lecture's "at first ... train more ..."); every epoch is scored
on the validation text, the state carried over it (:func:`captioner.charlm.evaluate`).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from tqdm import tqdm

from ..cells import State
from ..charlm import CharLM, CharLMConfig, CharVocab, SampleConfig, detach, evaluate, sample
from ..checkpoint import load_checkpoint, save_checkpoint
from ..data.text import read_documents, split_documents
from ..io import read_json
from ..settings import like, setting
from ..vocab import VOCAB_FILE
from .loop import Batch, Phase, RunConfig, Task, fit, shape_keys

LM_KEYS = shape_keys(CharLMConfig, "vocab_size")  # the model settings a run sets
BATCHINGS = ("streams", "chunks")
# the RunConfig settings a character model uses (the others are about images and captions)
LM_RUN_OPTIONS = (
    "out",
    "epochs",
    "batch_size",
    "lr",
    "min_lr_ratio",
    "weight_decay",
    "clip_norm",
    "seed",
    "save_every",
    "threads",
)


@dataclass
class LMTrainConfig(RunConfig):
    """Everything a character-model run depends on; saved beside the checkpoints."""

    SUMMARY: ClassVar[str] = "train a character-level language model"
    DESCRIPTION: ClassVar[str] = (
        "Train a character-level language model on UTF-8 text by truncated backpropagation through time. The last "
        "--val-fraction of the text (by position; with several files, from the next file boundary) is held out and "
        "scored after every epoch in nats per character, the state carried; OUT/best keeps the best epoch and "
        "OUT/last the latest (for --resume, bit-identical). A sample is printed every --sample-every steps."
    )
    ARCHITECTURE: ClassVar[tuple[str, ...]] = LM_KEYS

    text: tuple[str, ...] = setting(
        (), "a UTF-8 text file or a folder of them (searched recursively)", metavar="FILE_OR_DIR"
    )
    val_fraction: float = setting(0.1, "hold out this last share of the text for validation", low=0.0, below=1.0)
    out: str = like(RunConfig, "out", default="runs/lm")
    epochs: int = like(RunConfig, "epochs", default=10, help="passes over the training text (or over --epoch-chars)")
    epoch_chars: int = setting(
        0,
        "characters per epoch, to validate and checkpoint more often than once per pass (0: the whole training text)",
        low=0,
        high=10**12,
    )
    batch_size: int = like(RunConfig, "batch_size", default=64, help="streams (or chunks) per batch")
    bptt: int = setting(100, "characters per chunk: the gradient flows back this far", low=1, high=100_000)
    batches: str = setting(
        "streams",
        "streams: contiguous streams, the state carried from chunk to chunk; "
        "chunks: random chunks, each from a zero state",
        choices=BATCHINGS,
    )
    embed_dim: int = like(CharLMConfig, "embed_dim")
    hidden_dim: int = like(CharLMConfig, "hidden_dim")
    num_layers: int = like(CharLMConfig, "num_layers")
    cell: str = like(CharLMConfig, "cell")
    dropout: float = like(CharLMConfig, "dropout")
    sample_every: int = setting(500, "print a sample every N steps (0: never)", low=0, high=10**9)
    sample_length: int = setting(200, "characters per printed sample", low=1, high=10_000)
    prime: str = setting("\n", "what printed samples start from")
    val_streams: int = setting(
        16,
        "validation reads the held-out text as this many streams side by side, each from a zero state",
        low=1,
        high=4096,
    )

    def datasets(self) -> list:
        """No image datasets here: only a check, before any work, that there is text to read."""
        if not self.text:
            raise ValueError("no text: give --text FILE_OR_DIR at least once")
        return []


class TextData:
    """The training and validation text as ids, and the vocabulary."""

    def __init__(self, cfg: LMTrainConfig, vocab: CharVocab | None):
        documents = read_documents(cfg.text, note=lambda line: print(f"captioner: {line}", file=sys.stderr))
        train, val = split_documents(documents, cfg.val_fraction)
        self.vocab = vocab or CharVocab.from_text(train)
        self.train, self.val = self.vocab.encode(train), self.vocab.encode(val)  # (chars,) each
        one_batch = cfg.batch_size * (cfg.bptt + 1)
        if len(self.train) < one_batch:
            raise ValueError(
                f"the training text has {len(self.train):,} characters, fewer than one batch "
                f"(--batch-size {cfg.batch_size} x (--bptt {cfg.bptt} + 1) = {one_batch:,}); give more "
                "text or smaller settings"
            )
        if cfg.val_fraction and len(self.val) < 2:
            raise ValueError(
                f"the validation text has {len(self.val)} characters: give more text or a larger "
                "--val-fraction (0: none)"
            )


class LMTask(Task):
    """A character model as a :class:`~captioner.train.loop.Task`: one phase of ``epochs`` epochs of chunks."""

    best_by = "minus_val_loss"  # the loop keeps the highest: the lowest validation loss

    def __init__(self, cfg: LMTrainConfig, last: Path | None, rank: int, world: int):
        if world > 1:
            raise ValueError("lm train runs in one process: its streams are read in order")
        self.cfg = cfg
        vocab = CharVocab(read_json(last / VOCAB_FILE)["chars"]) if last else None
        self.data = TextData(cfg, vocab)
        self.model_config = CharLMConfig(len(self.data.vocab), **{k: getattr(cfg, k) for k in LM_KEYS})
        self.model = CharLM(self.model_config)
        if last is not None:
            self.model.load_state_dict(load_checkpoint(last)[0])
        self.width = len(self.data.train) // cfg.batch_size  # characters per stream
        per_epoch = (cfg.epoch_chars or len(self.data.train)) // (cfg.batch_size * cfg.bptt)
        self.steps = max(1, min(per_epoch, (self.width - 1) // cfg.bptt - 1))  # chunks per epoch
        self.state: State | None = None  # carried from chunk to chunk (streams)
        self.step_count = 0
        self.started = time.perf_counter()  # for the log's wall and CPU minutes (this process's, not a resumed run's)

    def phases(self) -> list[Phase]:
        batches = self._stream_batches if self.cfg.batches == "streams" else self._chunk_batches
        return [Phase(self.cfg.epochs, batches, self._loss)]

    def _stream_batches(self, generator: torch.Generator) -> list[Batch]:
        """Chunk ``k`` of every stream, in order, from an offset drawn per epoch (below ``bptt`` for a whole pass;
        anywhere that leaves room for the epoch's chunks with ``epoch_chars``): ``Batch([start, k])``."""
        room = self.width - 1 - self.steps * self.cfg.bptt
        offset = int(torch.randint(max(room, 1), (1,), generator=generator))
        return [Batch([offset + k * self.cfg.bptt, k]) for k in range(self.steps)]

    def _chunk_batches(self, generator: torch.Generator) -> list[Batch]:
        """As many batches, each of ``batch_size`` chunks starting anywhere in the training text."""
        starts = torch.randint(
            len(self.data.train) - self.cfg.bptt - 1, (self.steps, self.cfg.batch_size), generator=generator
        )
        return [Batch(row) for row in starts.tolist()]

    def _chunk(self, batch: Batch) -> torch.Tensor:
        """The batch's characters ``(B, bptt + 1)``: inputs are ``[:, :-1]``, targets ``[:, 1:]``."""
        n = self.cfg.bptt + 1
        if self.cfg.batches == "chunks":
            return torch.stack([self.data.train[s : s + n] for s in batch.rows])
        streams = self.data.train[: self.width * self.cfg.batch_size].view(self.cfg.batch_size, self.width)
        return streams[:, batch.rows[0] : batch.rows[0] + n]

    def _loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        streams = self.cfg.batches == "streams"
        loss, state = net.loss(self._chunk(batch), self.state if streams and batch.rows[1] > 0 else None)
        self.state = detach(state) if streams else None  # the next chunk starts here; its gradient stops here
        self.step_count += 1
        if self.cfg.sample_every and self.step_count % self.cfg.sample_every == 0:
            self._print_sample()
        return loss, loss.item()

    def _print_sample(self) -> None:
        """A sample of the model as it is now, between progress-bar lines; drawn with its own seed (the step), so
        the training's random numbers, and a resumed run, are untouched."""
        cfg = SampleConfig(prime=self.cfg.prime, length=self.cfg.sample_length, seed=self.step_count)
        text = "".join(sample(self.model, self.data.vocab, cfg))
        self.model.train()
        tqdm.write(f"--- sample at step {self.step_count} ---\n{text}\n---", file=sys.stderr)

    def validate(self) -> dict:
        if len(self.data.val) < 2:
            return {}
        total, count = evaluate(self.model, self.data.val, self.cfg.val_streams)
        return {
            "val_loss": round(total / count, 5),
            "minus_val_loss": -total / count,
            "steps": self.step_count,
            "train_chars": self.steps * self.cfg.batch_size * self.cfg.bptt,
            "wall_minutes": round((time.perf_counter() - self.started) / 60, 2),
            "cpu_minutes": round(time.process_time() / 60, 2),  # robust to other jobs on the machine
        }

    def report(self, scores: dict) -> str:
        if "val_loss" not in scores:
            return ""
        speed = scores["train_chars"] / max(scores.get("seconds", 0), 1e-9)
        return (
            f"val {scores['val_loss']:.4f} nats/char ({scores['val_loss'] / math.log(2):.3f} bits/char), "
            f"{speed:,.0f} chars/s with validation; {scores['wall_minutes']:.1f} min wall, "
            f"{scores['cpu_minutes']:.1f} min CPU so far"
        )

    def save(self, folder: Path, extra: dict | None = None) -> None:
        config = {"task": "lm", "model": asdict(self.model_config), "training": asdict(self.cfg), **(extra or {})}
        save_checkpoint(folder, self.model, config, {VOCAB_FILE: self.data.vocab.to_json()})

    def training_state(self) -> dict:
        return {"state": list(self.state) if self.state is not None else [], "step_count": self.step_count}

    def restore_training_state(self, state: dict) -> None:
        self.state = tuple(state["state"]) if state.get("state") else None
        self.step_count = state.get("step_count", 0)


def train_lm(cfg: LMTrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train a character model; returns the best validation scores. Writes ``best/`` and ``last/`` under
    ``cfg.out``, refusing to replace a finished run there unless ``overwrite``."""
    return fit(LMTask, cfg, resume, overwrite)
