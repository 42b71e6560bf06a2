"""Learning-rate schedule: a pure function of the optimizer step (nothing to checkpoint)."""

from __future__ import annotations

import math


def lr_at(step: int, *, peak: float, warmup_steps: int, total_steps: int, schedule: str,
          min_lr_ratio: float) -> float:
    """LR used for optimizer step ``step`` (0-based): linear warmup from 0 to ``peak`` over
    ``warmup_steps`` (step 0 already gets ``peak / warmup_steps``), then ``cosine``/``linear`` decay to
    ``peak * min_lr_ratio`` at ``total_steps``, or ``constant``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    floor = peak * min_lr_ratio
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    if schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "linear":
        return peak - (peak - floor) * t
    raise ValueError(f"optim.schedule={schedule!r}: expected 'cosine', 'linear' or 'constant'")
