"""Training from scratch: every micro-batch runs all K slots once, in order (the baseline)."""

from __future__ import annotations

from megagrow.growth.plans.base import Decision, StatelessPlan


class ScratchPlan(StatelessPlan):
    name = "scratch"

    def __init__(self, n_layers: int, growth=None, seed: int = 0, max_steps: int = 0, model=None):
        self._n = n_layers
        self._map = tuple(range(n_layers))

    def arch_at(self, step: int) -> dict[str, int]:
        return {"n_layers": self._n}

    def decide(self, step: int, micro_step: int) -> Decision:
        return Decision(phase="scratch", layer_map=self._map)

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return self._map
