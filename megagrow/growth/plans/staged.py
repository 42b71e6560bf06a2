"""Plans that grow depth in stages (Apollo, StackBERT): the stage schedule they share."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from megagrow.growth.plans.base import StatelessPlan


def stage_starts(boundaries: Sequence[float], unit: str, max_steps: int) -> list[int]:
    """First optimizer step of every stage: ``[0, b1, b2, ...]`` with fractions resolved against
    ``max_steps``; raises unless strictly increasing and inside the run."""
    steps = [round(b * max_steps) if unit == "fraction" else int(b) for b in boundaries]
    starts = [0, *steps]
    if any(b <= a for a, b in zip(starts, starts[1:], strict=False)) or (steps and steps[-1] >= max_steps):
        raise ValueError(f"growth.boundaries={list(boundaries)} ({unit}) resolve to stage starts {starts} for "
                         f"train.max_steps={max_steps}: they must be strictly increasing, > 0 and < max_steps")
    return starts


class StagedPlan(StatelessPlan):
    """Live layer counts ``stages[i]`` from step ``starts[i]`` on."""

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        self.n_max = n_layers
        self.stages = list(growth.stages) if growth is not None and growth.stages else [n_layers]
        self.starts = stage_starts(growth.boundaries if growth is not None else [],
                                   growth.boundary_unit if growth is not None else "steps", max_steps)
        self.seed = seed
        mults = list(growth.stage_lr_mults) if growth is not None and growth.stage_lr_mults else []
        self.lr_mults = mults or [1.0] * len(self.stages)

    def stage(self, step: int) -> int:
        return bisect_right(self.starts, step) - 1

    def lr_scale(self, step: int) -> float:
        """``growth.stage_lr_mults`` of the stage ``step`` is in (1 without them)."""
        return float(self.lr_mults[self.stage(step)])

    def live(self, step: int) -> int:
        return self.stages[self.stage(step)]

    def arch_at(self, step: int) -> dict[str, int]:
        return {"n_layers": self.live(step)}

    def boundary(self, step: int) -> tuple[int, int] | None:
        """``(n_old, n_new)`` when a stage starts at ``step`` (not the first)."""
        i = self.stage(step)
        return (self.stages[i - 1], self.stages[i]) if i > 0 and self.starts[i] == step else None
