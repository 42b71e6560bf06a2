"""Where a training step's time goes: ``logging.profile_steps: [first, last]`` runs torch.profiler over those
steps and writes ``<run>/profile.json`` (host time per phase of the step, per step) and ``profile_trace.json``
(a Chrome trace: chrome://tracing or Perfetto).

The phases are ``torch.profiler.record_function`` ranges around the parts of megagrow's step (:data:`PHASES`);
``other`` is the step's wall time outside them (the loop's bookkeeping). Times are host (CPU) times: on a CPU that
is where the math runs; on a GPU a phase's host time is what it costs to launch its work, and a host-bound step
(the GPU waiting) shows as host time near the step's wall time. Outside the window a range costs ~1 µs.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import torch

PHASES = ("transition", "plan", "data", "forward", "backward", "clip", "sync", "optimizer")
_PREFIX = "megagrow."


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    with torch.profiler.record_function(_PREFIX + name):
        yield


class StepProfiler:
    """Profiles steps ``first..last`` (1-based, as in metrics.jsonl) on the main rank; inert otherwise."""

    def __init__(self, window: list[int], run_dir: Path, active: bool) -> None:
        self.first, self.last = (int(window[0]), int(window[1])) if window and active else (0, -1)
        self.run_dir = run_dir
        self._prof: torch.profiler.profile | None = None
        self._t0 = 0.0
        self._walls: list[float] = []

    def before(self, step: int) -> None:
        """Call before the step that will be number ``step`` (1-based)."""
        if step == self.first and self._prof is None:
            acts = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            self._prof = torch.profiler.profile(activities=acts)
            self._prof.__enter__()
        if self._prof is not None:
            self._t0 = time.perf_counter()

    def after(self, step: int) -> None:
        if self._prof is None:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._walls.append(time.perf_counter() - self._t0)
        if step >= self.last:
            self._prof.__exit__(None, None, None)
            self._write(self._prof)
            self._prof = None

    def _write(self, prof: torch.profiler.profile) -> None:
        n = len(self._walls)
        per_phase = {p: 0.0 for p in PHASES}
        for ev in prof.key_averages():
            if ev.key.startswith(_PREFIX) and ev.key[len(_PREFIX):] in per_phase:
                per_phase[ev.key[len(_PREFIX):]] += ev.cpu_time_total / 1e6  # inclusive host time, seconds
        wall = sum(self._walls)
        summary = {
            "steps": [self.first, self.first + n - 1], "n_steps": n,
            "step_wall_s": wall / n,
            "phases_s_per_step": {p: v / n for p, v in per_phase.items()},
            "other_s_per_step": max(0.0, wall - sum(per_phase.values())) / n,
            "note": "host time per step; inclusive ranges (megagrow.trainer.profiling)",
        }
        tmp = self.run_dir / "profile.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(self.run_dir / "profile.json")
        prof.export_chrome_trace(str(self.run_dir / "profile_trace.json"))
