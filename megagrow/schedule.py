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


def phase_lr(step: int, *, starts: list[int], max_steps: int, policy: str, peak: float, warmup_steps: int,
             schedule: str, min_lr_ratio: float) -> float:
    """LR of ``step`` for a run cut into phases at ``starts`` (a growth plan's transitions).

    ``continue``: one global schedule over the run, transitions ignored. ``rewarm``: the global schedule,
    ramped up linearly again over ``warmup_steps`` after each transition. ``reset``: a fresh schedule per
    phase — the first phase warms up, later phases start at the peak and decay over their own length
    (the Multi-level reference: every stage a new trainer, no warmup after the first)."""
    start = max(x for x in starts if x <= step)
    end = next((x for x in starts if x > step), max_steps)
    kw = dict(peak=peak, schedule=schedule, min_lr_ratio=min_lr_ratio)
    if policy == "continue":
        return lr_at(step, warmup_steps=warmup_steps, total_steps=max_steps, **kw)
    if policy == "rewarm":
        ramp = 1.0 if start == 0 else min(1.0, (step - start + 1) / max(1, warmup_steps))
        return ramp * lr_at(step, warmup_steps=warmup_steps, total_steps=max_steps, **kw)
    if policy == "reset":
        warm = warmup_steps if start == 0 else 0
        return lr_at(step - start, warmup_steps=warm, total_steps=end - start, **kw)
    raise ValueError(f"growth.lr_policy={policy!r}: expected 'continue', 'rewarm' or 'reset'")
