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
            return peak if precision == "bf16" else peak / 2
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


class Progress:
    """A console progress bar with loss, tokens/s, MFU or GFLOP/s and ETA (tqdm)."""

    def __init__(self, total: int, initial: int, bar: bool, main: bool):
        self._bar = None
        self._main = main
        if bar and main:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                             mininterval=0.5)

    def update(self, n: int, **postfix: str) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)

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
