"""The plan protocol: a growth plan is a schedule, not a trainer.

For every (optimizer step, micro-step) a plan answers which phase runs and which layer map the model
executes. It never calls the trainer; its small state goes into the checkpoint. Decisions must be a
pure function of (seed, step, micro_step, plan state) so every rank can evaluate them or rank 0 can
broadcast them (later issues add transitions that change the architecture).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Decision:
    """What to run for one micro-batch."""

    phase: str
    layer_map: tuple[int, ...]
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return len(self.layer_map)


class Plan(Protocol):
    name: str

    def decide(self, step: int, micro_step: int) -> Decision:
        """The decision for micro-batch ``micro_step`` of optimizer step ``step``."""
        ...

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        """The layer map used to evaluate the model as it stands at ``step``."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
