"""Time left in a run whose steps do not all cost the same: growth plans run small models first.

A step-rate ETA (seconds per step so far x steps left) is wrong by the plan's whole FLOPs ratio during
the small phases. Here the remaining steps are weighted by their *expected* training FLOPs
(:func:`megagrow.planner.show.summarize`, the same numbers ``megagrow plan show`` prints) relative to the
expected FLOPs of the steps just measured: ``eta = measured_wall / cost(measured steps) * cost(remaining)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CostProfile:
    """Expected FLOPs per optimizer step, piecewise constant over ``[start, end)`` segments, plus one-off
    costs charged at a step (a learned transition's operator training)."""

    segments: tuple[tuple[int, int, float], ...]
    one_off: tuple[tuple[int, float], ...] = ()

    def cost(self, a: int, b: int) -> float:
        """Expected FLOPs of steps ``[a, b)``."""
        total = sum(f * max(0, min(b, end) - max(a, start)) for start, end, f in self.segments)
        return total + sum(f for step, f in self.one_off if a <= step < b)

    @classmethod
    def from_summary(cls, summary: Any) -> CostProfile:
        """From a :class:`megagrow.planner.show.PlanSummary`."""
        return cls(tuple((p.start_step, p.end_step, float(p.flops_per_step)) for p in summary.phases),
                   tuple((int(t["step"]), float(t["fit_flops"])) for t in summary.transitions if t.get("fit_flops")))


def eta_seconds(profile: CostProfile | None, wall: float, measured: tuple[int, int], step: int,
                max_steps: int) -> float | None:
    """Seconds left after ``step`` given that steps ``measured = [a, b)`` took ``wall`` seconds; a plain
    step-rate estimate without a profile. None when nothing was measured."""
    a, b = measured
    if wall <= 0 or b <= a:
        return None
    if profile is None:
        return wall / (b - a) * max(0, max_steps - step)
    spent = profile.cost(a, b)
    if spent <= 0:
        return None
    return wall / spent * profile.cost(step, max_steps)


def format_seconds(s: float | None) -> str:
    """``1:02:03`` / ``2:03``; ``?`` when unknown."""
    if s is None:
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
