"""Small pieces of loop state: cumulative counters, the metrics interval, the stop flag, dropout seeds."""

from __future__ import annotations

import hashlib
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any

from megagrow.metrics import throughput_fields


@dataclass
class Counters:
    """Cumulative progress; saved in every checkpoint so it survives resume."""

    step: int = 0
    samples: int = 0
    tokens: int = 0
    flops: int = 0
    wall_s: float = 0.0
    skipped_steps: int = 0  # optimizer steps not applied (non-finite loss or gradient)


@dataclass
class Interval:
    """Sums over the steps since the last metrics record."""

    tokens: int = 0
    flops: int = 0
    wall: float = 0.0
    sched: float = 0.0  # seconds in the rank-0 scheduler's broadcast (part of ``wall``)
    loss: float = 0.0
    depth: float = 0.0
    steps: int = 0
    skipped: int = 0  # steps not applied: their (non-finite) losses are left out of ``loss``
    phase: str = ""

    def record(self, counters: Counters, lr: float, hidden: int, peak: float | None, world: int) -> dict[str, Any]:
        depth = self.depth / self.steps
        flops_per_s = self.flops / max(self.wall, 1e-9)
        applied = self.steps - self.skipped
        return {**asdict(counters), "loss": self.loss / applied if applied else float("nan"), "lr": lr,
                "depth": int(depth) if depth.is_integer() else depth, "hidden": hidden, "phase": self.phase,
                "tokens_per_s": self.tokens / max(self.wall, 1e-9), "sched_s": self.sched,
                **throughput_fields(flops_per_s, peak, world)}


def dropout_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Dropout RNG seed of one micro-batch: a pure function, so resume needs no RNG state."""
    h = hashlib.blake2b(f"{seed}/{step}/{micro}/{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


class StopFlag:
    """The first SIGTERM/SIGINT asks the loop to checkpoint and exit cleanly after the current step;
    a second one restores the default handlers and re-raises (hard stop). A second SIGTERM within
    ``DUPLICATE_S`` of the first is the same request delivered twice and is ignored: Slurm signals every
    process of a job step, and torchrun's agent (one of them) forwards its own copy to the ranks a moment
    later (found by the Slurm system test: the ranks died mid-checkpoint)."""

    DUPLICATE_S = 5.0

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None  # the signal that asked, e.g. "SIGTERM"
        self._first_at = 0.0
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum: int, frame: object) -> None:  # noqa: ARG002
        now = time.monotonic()
        if self.requested:
            if signum == signal.SIGTERM and self.signal_name == "SIGTERM" and now - self._first_at < self.DUPLICATE_S:
                return
            self.restore()
            signal.raise_signal(signum)
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        self._first_at = now

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
