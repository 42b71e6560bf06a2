"""Validation loss against training FLOPs, as a run's evaluations give it: pure arithmetic for the planner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
class PowerLaw:
    """``L(F) = a + b * F^-c``: a loss curve's usual shape at constant LR, fitted to extrapolate it a little."""

    a: float
    b: float
    c: float

    def loss(self, flops: float) -> float:
        return self.a + self.b * flops ** -self.c

    def flops_at(self, loss: float) -> float | None:
        """The FLOPs at which the law reaches ``loss``; None below its floor ``a``."""
        return None if loss <= self.a else (self.b / (loss - self.a)) ** (1 / self.c)


def fit_power_law(curve: Curve, from_flops: float = 0.0) -> PowerLaw | None:
    """Least squares of ``a + b F^-c`` over the points at or after ``from_flops`` (c on a grid, a and b linear);
    None with fewer than 4 points or no decreasing fit."""
    f = np.array([x for x in curve.flops if x >= from_flops], dtype=np.float64)
    v = np.array([y for x, y in zip(curve.flops, curve.loss, strict=True) if x >= from_flops], dtype=np.float64)
    if len(f) < 4:
        return None
    scale = f[-1]
    best: tuple[float, PowerLaw] | None = None
    for c in np.linspace(0.02, 2.0, 199):
        x = (f / scale) ** -c
        design = np.stack([np.ones_like(x), x], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, v, rcond=None)
        if b <= 0:
            continue
        err = float(np.sum((design @ np.array([a, b]) - v) ** 2))
        if best is None or err < best[0]:
            best = (err, PowerLaw(float(a), float(b) * scale ** c, float(c)))
    return None if best is None else best[1]


@dataclass(frozen=True)
class Lead:
    """How far ahead of scratch a probe is: scratch's FLOPs to reach the probe's loss minus the probe's FLOPs
    (negative: behind). ``extrapolated``: scratch's measured curve ends before reaching the loss, and its fitted
    power law (within ``max_extrapolation`` x its measured FLOPs) gives the FLOPs; ``bound``: not even that, so
    the lead is at least ``flops`` (the end of what is known minus the probe's FLOPs)."""

    flops: float
    bound: bool = False
    extrapolated: bool = False


def lead(scratch: Curve, flops: float, loss: float, law: PowerLaw | None = None,
         max_extrapolation: float = 2.0) -> Lead:
    """The lead of a run at (``flops``, ``loss``) over ``scratch`` (its fitted ``law`` past its end, if given)."""
    reach = flops_to_reach(scratch, loss)
    if reach is not None:
        return Lead(reach - flops)
    limit = max_extrapolation * scratch.end
    if law is not None:
        at = law.flops_at(loss)
        if at is not None and at <= limit:
            return Lead(max(at, scratch.end) - flops, extrapolated=True)
        return Lead((limit if law is not None else scratch.end) - flops, bound=True)
    return Lead(scratch.end - flops, bound=True)


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
