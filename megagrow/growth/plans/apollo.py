"""Apollo (Pan et al., AAAI 2024): progressive depth stages with a depth sampled per micro-batch.

In stage s the model holds N(s) live weight sets (the engine is rebuilt at each stage, so nothing costs
what the full model costs); every micro-batch draws a depth d in [N, L] (LVPS by default) and runs the
layer map phi(i) = floor(i*N/d) (interpolation; or stacking), sharing weights so low layers learn the
lessons of high ones. At a stage boundary the live sets expand N_old -> N_new by the same map
(weights, and by default their AdamW moments, copied). Draws are a pure function of (seed, step,
micro-step): resume needs no state and every rank draws the same depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from megagrow.fields import doc
from megagrow.growth.ops.depth import expand_depth, layer_map
from megagrow.growth.plans.base import Decision, MethodOptions, Transition
from megagrow.growth.plans.staged import StagedPlan
from megagrow.growth.samplers import get_sampler


@dataclass
class ApolloOptions(MethodOptions):
    """``growth.apollo:`` (docs/methods/apollo.md)."""

    layer_map: Literal["interpolation", "stacking"] = doc(
        "how sampled depth positions map to live weight sets, and how stages expand: stacking (the default and "
        "configs/plans/apollo.yaml's: measured better in both suites, docs/growth-pays.md) or interpolation (the "
        "paper's)", "stacking")


class ApolloPlan(StagedPlan):
    name = "apollo"
    section = "apollo"

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        super().__init__(n_layers, growth, seed, max_steps)
        self.sampler = get_sampler(growth.sampler)
        self.map_kind = growth.apollo.layer_map
        self.moments = "keep" if growth.moments == "auto" else growth.moments
        self.depth_sampler = self.sampler.name

    def depth_pmf(self, step: int) -> dict[int, float]:
        return {int(d): float(q) for d, q in self.sampler.pmf(self.live(step), self.n_max).items()}

    def transition(self, step: int) -> Transition | None:
        b = self.boundary(step)
        if b is None:
            return None
        n_old, n_new = b
        op = partial(expand_depth, n_old=n_old, n_new=n_new, kind=self.map_kind, moments=self.moments)
        return Transition(f"apollo {n_old}->{n_new} ({self.map_kind})", {"n_layers": n_new}, op)

    def decide(self, step: int, micro_step: int) -> Decision:
        n = self.live(step)
        d = self.sampler.sample(n, self.n_max, self.seed, step, micro_step)
        return Decision(phase=f"apollo-N{n}", layer_map=tuple(layer_map(self.map_kind, n, d)))

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return tuple(layer_map(self.map_kind, self.live(step), self.n_max))
