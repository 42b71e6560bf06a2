"""Training from scratch: every micro-batch runs all K slots once, in order (the baseline)."""

from __future__ import annotations

from typing import Any

from megagrow.growth.plans.base import Decision


class ScratchPlan:
    name = "scratch"

    def __init__(self, n_slots: int, seed: int = 0):
        self._map = tuple(range(n_slots))

    def decide(self, step: int, micro_step: int) -> Decision:
        return Decision(phase="scratch", layer_map=self._map)

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return self._map

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"checkpoint was written by plan {state.get('name')!r}, this run uses {self.name!r}")
