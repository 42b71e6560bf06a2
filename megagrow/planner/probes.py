"""The planner's candidates and its probe bookkeeping: pure functions, no training."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PlanChoice:
    """A plan to probe: a registered plan with one growth, and for depth plans the small model's live layers
    (``stackbert:6`` = 6 layers grown into the config's ``model.n_layers``)."""

    plan: str
    small: int | None = None

    @classmethod
    def parse(cls, text: str) -> PlanChoice:
        name, _, small = text.strip().partition(":")
        if not name or name == "scratch":
            raise ValueError(f"--plans: {text!r} is not a growth plan (expected PLAN or PLAN:SMALL_LAYERS, "
                             "e.g. stackbert:6, gstack:3, msg)")
        if small and not small.isdigit():
            raise ValueError(f"--plans: {text!r}: the small model's live layers after ':' must be an integer")
        return cls(name, int(small) if small else None)

    @property
    def tag(self) -> str:
        return self.plan if self.small is None else f"{self.plan}{self.small}"

    def overrides(self, n_layers: int) -> tuple[str, ...]:
        stages = () if self.small is None else (f"--growth.stages=[{self.small},{n_layers}]",)
        return (f"--growth.plan={self.plan}", *stages)


@dataclass(frozen=True)
class Candidate:
    """One grid point: a plan, its peak LR and the step it grows at."""

    choice: PlanChoice
    lr: float
    growth_step: int

    @property
    def prefix(self) -> str:
        """The name of the run every candidate with this plan and LR shares up to its growth step."""
        return f"{self.choice.tag}-lr{self.lr:g}"

    @property
    def name(self) -> str:
        return f"{self.prefix}-g{self.growth_step}"


def stable_end(max_steps: int, decay_fraction: float) -> int:
    """The first step of WSD's final decay: before it the LR does not depend on ``max_steps``."""
    return max_steps - math.ceil(decay_fraction * max_steps)


def growth_steps(points: Sequence[float], max_steps: int, lag: int, decay_fraction: float,
                 warmup_steps: int) -> list[int]:
    """Candidate growth points as steps: a point < 1 is a fraction of ``max_steps``, else a step. Each probe
    (``lag`` steps past its growth) must end in WSD's stable phase and start after the warmup; raises naming
    the point otherwise."""
    if lag < 1:
        raise ValueError(f"--lag={lag}: a probe needs at least one step after its growth")
    end = stable_end(max_steps, decay_fraction)
    steps: list[int] = []
    for p in points:
        g = round(p * max_steps) if p < 1 else int(p)
        if g <= warmup_steps or g + lag > end:
            raise ValueError(
                f"--points: {p:g} is step {g}; a growth point must come after the warmup (optim.warmup_steps="
                f"{warmup_steps}) and its probe ({g} + --lag {lag}) must end by step {end}, where the final decay "
                f"of optim.decay_fraction={decay_fraction:g} of {max_steps} steps starts")
        steps.append(g)
    if len(set(steps)) != len(steps):
        raise ValueError(f"--points {list(points)} give the same step twice: {steps}")
    return sorted(steps)


def candidates(choices: Sequence[PlanChoice], lrs: Sequence[float], steps: Sequence[int]) -> list[Candidate]:
    """Every (plan, LR, growth step), earliest growth first: a probe budget that runs out cuts the latest
    growth points of every plan, not a whole plan."""
    if not choices or not lrs or not steps:
        raise ValueError("plan tune needs at least one plan, one LR and one growth point")
    return [Candidate(c, lr, g) for g in sorted(steps) for c in choices for lr in lrs]


def prefix_end(cands: Sequence[Candidate], prefix: str) -> int:
    """The growth step the prefix run itself is configured with: its latest candidate's (nothing grows before
    any fork point, so the prefix is every candidate's first steps)."""
    return max(c.growth_step for c in cands if c.prefix == prefix)


@dataclass
class Ledger:
    """The probes' FLOPs against their cap."""

    cap: float
    spent: float = 0.0

    def affords(self, cost: float) -> bool:
        return self.spent + cost <= self.cap * (1 + 1e-9)

    def charge(self, flops: float) -> None:
        self.spent += flops
