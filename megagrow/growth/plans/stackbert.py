"""StackBERT (Gong et al., 2019): train a shallow model, then stack it on itself (e.g. 3 -> 6 -> 12).

Every micro-batch runs all live layers once; at a stage boundary the layers are copied on top of
themselves (new layer j = old layer j mod N_old), weights and by default AdamW moments.
"""

from __future__ import annotations

from functools import partial

from megagrow.growth.ops.stacking import grow_depth
from megagrow.growth.plans.base import Decision, Transition
from megagrow.growth.plans.staged import StagedPlan


class StackBertPlan(StagedPlan):
    name = "stackbert"

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        super().__init__(n_layers, growth, seed, max_steps)
        self.moments = "fresh" if growth.moments == "auto" else growth.moments
        self.depth_op = growth.depth_op if growth is not None else "stack"

    def transition(self, step: int) -> Transition | None:
        b = self.boundary(step)
        if b is None:
            return None
        n_old, n_new = b
        op = partial(grow_depth, n_old=n_old, n_new=n_new, op=self.depth_op, moments=self.moments)
        how = "" if self.depth_op == "stack" else f" ({self.depth_op})"
        return Transition(f"stackbert {n_old}->{n_new}{how}", {"n_layers": n_new}, op)

    def decide(self, step: int, micro_step: int) -> Decision:
        n = self.live(step)
        return Decision(phase=f"stack-N{n}", layer_map=tuple(range(n)))

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return tuple(range(self.live(step)))


class GStackPlan(StackBertPlan):
    """G_stack (Du et al., NeurIPS 2024): train a small model, then stack the whole model g times at once
    (``stages: [n, g*n]``, one boundary); the same operator as StackBERT with a general factor."""

    name = "gstack"
