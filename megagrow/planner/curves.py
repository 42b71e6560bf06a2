"""Validation loss against training FLOPs, as a run's evaluations give it: pure arithmetic for the planner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Curve:
    """Evaluation points of one run: cumulative training FLOPs (increasing) and the validation loss there."""

    flops: tuple[float, ...]
    loss: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.flops) != len(self.loss):
            raise ValueError(f"a curve needs one loss per FLOPs value: {len(self.flops)} vs {len(self.loss)}")
        if any(b <= a for a, b in zip(self.flops, self.flops[1:], strict=False)):
            raise ValueError("a curve's FLOPs must increase from one evaluation to the next")

    @classmethod
    def of(cls, points: Sequence[tuple[float, float]]) -> Curve:
        pts = sorted(points)
        return cls(tuple(float(f) for f, _ in pts), tuple(float(v) for _, v in pts))

    @property
    def end(self) -> float:
        return self.flops[-1] if self.flops else 0.0


def flops_to_reach(curve: Curve, loss: float) -> float | None:
    """The first FLOPs at which ``curve`` (linear between evaluations) is at or below ``loss``; None if never.
    A curve already below ``loss`` at its first evaluation gives that evaluation's FLOPs."""
    for i, (f, v) in enumerate(zip(curve.flops, curve.loss, strict=True)):
        if v <= loss:
            if i == 0:
                return f
            f0, v0 = curve.flops[i - 1], curve.loss[i - 1]
            return f0 + (f - f0) * (v0 - loss) / (v0 - v)
    return None


@dataclass(frozen=True)
class Lead:
    """How far ahead of scratch a probe is: scratch's FLOPs to reach the probe's loss minus the probe's FLOPs
    (negative: behind). ``bound``: scratch's curve ended before reaching the loss, so the lead is at least
    ``flops`` (its end minus the probe's FLOPs)."""

    flops: float
    bound: bool = False


def lead(scratch: Curve, flops: float, loss: float) -> Lead:
    """The lead of a run at (``flops``, ``loss``) over ``scratch``."""
    reach = flops_to_reach(scratch, loss)
    if reach is None:
        return Lead(scratch.end - flops, bound=True)
    return Lead(reach - flops)


def loss_at(curve: Curve, flops: float) -> float | None:
    """The curve's loss at ``flops`` (linear between evaluations); None outside the evaluated range."""
    if not curve.flops or flops < curve.flops[0] or flops > curve.flops[-1]:
        return None
    for i in range(1, len(curve.flops)):
        if flops <= curve.flops[i]:
            f0, f1 = curve.flops[i - 1], curve.flops[i]
            v0, v1 = curve.loss[i - 1], curve.loss[i]
            return v0 + (v1 - v0) * (flops - f0) / (f1 - f0)
    return curve.loss[-1]
