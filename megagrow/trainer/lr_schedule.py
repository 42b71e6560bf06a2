"""Learning-rate schedule: a pure function of the optimizer step (nothing to checkpoint)."""

from __future__ import annotations

import math

WSD_SHAPES = ("linear", "cosine", "1-sqrt")


def decay_factor(t: float, shape: str) -> float:
    """Fraction of the way from the peak (1) to the floor (0) still left at decay progress ``t`` in [0, 1]."""
    t = min(1.0, max(0.0, t))
    if shape == "linear":
        return 1.0 - t
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if shape == "1-sqrt":  # Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Durations"
        return 1.0 - math.sqrt(t)
    raise ValueError(f"optim.wsd_decay_shape={shape!r}: expected one of {list(WSD_SHAPES)}")


def wsd_decay_start(total_steps: int, decay_fraction: float) -> int:
    """First step of WSD's decay phase: the last ``decay_fraction`` of ``total_steps`` (rounded to a step)."""
    return total_steps - round(decay_fraction * total_steps)


def lr_at(step: int, *, peak: float, warmup_steps: int, total_steps: int, schedule: str,
          min_lr_ratio: float, decay_fraction: float = 0.2, wsd_decay_shape: str = "linear") -> float:
    """LR used for optimizer step ``step`` (0-based): linear warmup from 0 to ``peak`` over
    ``warmup_steps`` (step 0 already gets ``peak / warmup_steps``), then ``cosine``/``linear`` decay to
    ``peak * min_lr_ratio`` at ``total_steps``, or ``constant``, or ``wsd`` (warmup-stable-decay): the peak
    until the last ``decay_fraction`` of ``total_steps``, then a ``wsd_decay_shape`` decay to the floor at
    ``total_steps`` (with ``warmup_steps`` beyond the decay start, the decay wins)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    floor = peak * min_lr_ratio
    if schedule == "wsd":
        start = wsd_decay_start(total_steps, decay_fraction)
        if step < start:
            return peak
        return floor + (peak - floor) * decay_factor((step - start) / max(1, total_steps - start), wsd_decay_shape)
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    if schedule == "cosine":
        return floor + (peak - floor) * decay_factor(t, "cosine")
    if schedule == "linear":
        return peak - (peak - floor) * t
    raise ValueError(f"optim.schedule={schedule!r}: expected 'cosine', 'linear', 'constant' or 'wsd'")


def phase_lr(step: int, *, starts: list[int], max_steps: int, policy: str, peak: float, warmup_steps: int,
             schedule: str, min_lr_ratio: float, decay_fraction: float = 0.2, wsd_decay_shape: str = "linear") -> float:
    """LR of ``step`` for a run cut into phases at ``starts`` (a growth plan's transitions).

    ``continue``: one global schedule over the run, transitions ignored. ``rewarm``: the global schedule,
    ramped up linearly again over ``warmup_steps`` after each transition. ``reset``: a fresh schedule per
    phase — the first phase warms up, later phases start at the peak and decay over their own length
    (the Multi-level reference: every stage a new trainer, no warmup after the first).

    Under ``wsd`` with ``continue`` or ``rewarm`` a plan grows during the stable phase at the peak LR and the
    run decays once, at its end (growth in the decay window is allowed, and decays on); under ``reset`` every
    phase is a WSD of its own (a decay at the end of each phase)."""
    start = max(x for x in starts if x <= step)
    end = next((x for x in starts if x > step), max_steps)
    kw = dict(peak=peak, schedule=schedule, min_lr_ratio=min_lr_ratio, decay_fraction=decay_fraction,
              wsd_decay_shape=wsd_decay_shape)
    if policy == "continue":
        return lr_at(step, warmup_steps=warmup_steps, total_steps=max_steps, **kw)
    if policy == "rewarm":
        ramp = 1.0 if start == 0 else min(1.0, (step - start + 1) / max(1, warmup_steps))
        return ramp * lr_at(step, warmup_steps=warmup_steps, total_steps=max_steps, **kw)
    if policy == "reset":
        warm = warmup_steps if start == 0 else 0
        return lr_at(step - start, warmup_steps=warm, total_steps=end - start, **kw)
    raise ValueError(f"growth.lr_policy={policy!r}: expected 'continue', 'rewarm' or 'reset'")
