"""Run metrics: ``metrics.jsonl`` (the stable interface other tools read), TensorBoard, console.

Every record has at least the keys in :data:`REQUIRED_KEYS`; evaluation records add ``val_loss``.
Keep these names stable: reports and benchmarks read them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

REQUIRED_KEYS = ("step", "samples", "tokens", "flops", "loss", "lr", "depth", "hidden", "phase", "wall_s",
                 "tokens_per_s")

# Dense bf16 peak FLOP/s per device (tensor cores), for MFU. Extend as needed.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "V100": 125e12,
}


def peak_flops_per_device(precision: str) -> float | None:
    """Peak FLOP/s of this device for ``precision``, or None when unknown (CPU, unlisted GPU)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, peak in PEAK_BF16_FLOPS.items():
        if key in name:
            # fp32 training on tensor cores runs as TF32 at half the bf16 rate on these parts.
            return peak if precision.startswith("bf16") else peak / 2
    return None


class MetricsWriter:
    """Appends records to ``metrics.jsonl`` and mirrors scalars to TensorBoard (main rank only)."""

    def __init__(self, run_dir: Path, tensorboard: bool):
        self.path = run_dir / "metrics.jsonl"
        self._file = self.path.open("a", buffering=1)
        self._tb = None
        self._last_phase: str | None = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            raise KeyError(f"metrics record lacks {missing}")
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            step = int(record["step"])
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{'val' if k.startswith('val_') else 'train'}/{k}", v, step)
            if record["phase"] != self._last_phase:
                self._tb.add_text("train/phase", str(record["phase"]), step)
                self._last_phase = record["phase"]

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def progress_mode(setting: str, is_tty: bool) -> str:
    """``bar``, ``lines`` or ``off`` for ``logging.progress``: auto = the bar on a terminal, else plain lines."""
    if setting == "on":
        return "bar"
    if setting == "off":
        return "off"
    return "bar" if is_tty else "lines"


class Progress:
    """Console progress on the main rank: a tqdm bar (loss, tokens/s, MFU or GFLOP/s, ETA) on a terminal, or
    without one (Slurm logs, pipes) a plain line per metrics record; ``off`` prints neither. :meth:`write`
    lines (evaluations, transitions, stops) are printed in every mode."""

    def __init__(self, total: int, initial: int, mode: str, main: bool):
        self._bar = None
        self._main = main
        self._mode = mode if main else "off"
        self._total = total
        if self._mode == "bar":
            from tqdm import tqdm

            # tqdm's own remaining time assumes every step costs the same; the ETA comes in the postfix
            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                             mininterval=0.5, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def report(self, step: int, fields: dict[str, str]) -> None:
        """A metrics record: the bar's postfix, or one plain line ``step 120/1000 | loss 3.21 | ...``."""
        if self._bar is not None:
            self._bar.set_postfix(fields, refresh=False)
        elif self._mode == "lines":
            pct = 100.0 * step / max(1, self._total)
            parts = [f"step {step}/{self._total} ({pct:.0f}%)", *(f"{k} {v}" for k, v in fields.items())]
            print(" | ".join(parts), file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        elif self._main:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def throughput_fields(flops_per_s: float, peak: float | None, world_size: int) -> dict[str, float]:
    """``mfu`` where the device peak is known, otherwise achieved GFLOP/s per device."""
    per_device = flops_per_s / max(1, world_size)
    out = {"gflops_per_s": per_device / 1e9}
    if peak:
        out["mfu"] = per_device / peak
    return out
