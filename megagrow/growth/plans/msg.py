"""MSG (masked structural growth, Yao et al., ICLR 2024): train a small model, grow it in width and depth
with every new unit behind a mask, and ramp the masks from 0 to 1 while training continues.

The small model has half the target's width (hidden, heads — head size kept — and FFN) and half its depth;
the growth (:func:`~megagrow.growth.ops.msg.msg_grow`: old tensors in the leading corner, new ones fresh,
new layers on top copying the stack) happens at the single boundary (``growth.boundaries: [b]``). From
that step on the decisions carry ``extras["masks"]`` (a :class:`~megagrow.models.GrowthMasks` at value
``c = msg_mask(step, b, ramp)``, 0 on the growth step, so the grown model starts as the small model's
function), for ``growth.msg.ramp_steps`` steps; after that the masks are all ones and are dropped
(``None``: the plain target model). The masks are a pure function of the step, so resuming mid-ramp is
exact. FLOPs: the grown architecture is charged during the ramp (masked units still compute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from megagrow.fields import doc
from megagrow.growth.ops.msg import MsgMasks, msg_grow, msg_mask
from megagrow.growth.plans.base import Decision, MethodOptions, Transition
from megagrow.growth.plans.half import HalfToTargetPlan
from megagrow.models.masks import GrowthMasks


def ramp_steps(value: float, max_steps: int) -> int:
    """``growth.msg.ramp_steps`` in optimizer steps: ``< 1`` a fraction of the run, else a step count."""
    return round(value * max_steps) if value < 1 else int(value)


@dataclass
class MsgOptions(MethodOptions):
    """``growth.msg:`` (docs/methods/msg.md)."""

    ramp_steps: float = doc("steps over which the masks of the grown units ramp from 0 to 1 after the growth step; "
                            "< 1 = a fraction of train.max_steps, >= 1 = optimizer steps (an integer); 0 = no ramp "
                            "(the plain grown model at once)", 0.1)
    resume_rules: ClassVar[dict[str, tuple[str, str]]] = {
        "ramp_steps": ("honoured", "how the growth schedule is written; the resolved schedule is compared")}

    def problems(self) -> list[str]:
        r = self.ramp_steps
        if not r == r or r < 0 or (r >= 1 and r != int(r)):
            return [f"growth.msg.ramp_steps={r}: must be a fraction of the run in [0, 1) or a whole number of steps"]
        return []


class MsgPlan(HalfToTargetPlan):
    name = "msg"
    section = "msg"

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        super().__init__(n_layers, growth, seed, max_steps, model)
        self.ramp = ramp_steps(growth.msg.ramp_steps, max_steps)
        self.moments = "copy" if growth.moments in ("auto", "copy", "keep") else "reset"
        self.sizes = MsgMasks.between(self.half, self.full)

    def transition(self, step: int) -> Transition | None:
        if step != self.start:
            return None

        def op(state):
            return msg_grow(state, self.target.family, self.half, self.full, seed=self.seed,
                            init_std=self.target.init_std, moments=self.moments)[0]

        return Transition(f"msg masked growth (masks ramp over {self.ramp} steps)", self.dims(False), op)

    def schedule_extras(self) -> str:
        return f", mask ramp {self.ramp} steps"

    def mask_value(self, step: int) -> float:
        """``c`` during optimizer step ``step`` (1 before the growth: nothing is masked)."""
        return 1.0 if step < self.start else msg_mask(step, self.start, self.ramp)

    def masks(self, step: int) -> GrowthMasks | None:
        """The masks in effect during optimizer step ``step``; ``None`` outside the ramp."""
        c = self.mask_value(step)
        return None if c >= 1.0 else self.sizes.growth_masks(c)

    def decide(self, step: int, micro_step: int) -> Decision:
        small = step < self.start
        masks = self.masks(step)
        return Decision(phase="msg-small" if small else "msg-target",
                        layer_map=tuple(range(self.size(small).n_layers)),
                        extras={} if masks is None else {"masks": masks})

    def eval_masks(self, step: int) -> GrowthMasks | None:
        """The masks that evaluate the model as it stands after optimizer step ``step`` ran (those of that step)."""
        return self.masks(step)
