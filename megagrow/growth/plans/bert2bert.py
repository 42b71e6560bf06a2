"""bert2BERT (Chen et al., ACL 2022): train a small model, then grow it in width (FPI or AKI, head-wise)
and depth (stacking) to the target, and keep training.

The small model here has half the target's width (hidden, heads — head size kept — and FFN) and half
its depth; the growth happens at the single boundary (``growth.boundaries: [b]``), with
``growth.bert2bert.method`` (``aki`` by default, as the paper's best) and moments copied with the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from megagrow.fields import doc
from megagrow.growth.ops.bert2bert import bert2bert
from megagrow.growth.plans.base import MethodOptions, Transition
from megagrow.growth.plans.half import HalfToTargetPlan


@dataclass
class Bert2BertOptions(MethodOptions):
    """``growth.bert2bert:`` (docs/methods/bert2bert.md)."""

    method: Literal["aki", "fpi"] = doc("width growth: AKI (the paper's best) or FPI (function preserving)", "aki")


class Bert2BertPlan(HalfToTargetPlan):
    name = "bert2bert"
    section = "bert2bert"

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        super().__init__(n_layers, growth, seed, max_steps, model)
        self.method = growth.bert2bert.method
        self.moments = "copy" if growth.moments in ("auto", "copy", "keep") else "reset"

    def transition(self, step: int) -> Transition | None:
        if step != self.start:
            return None
        op = partial(bert2bert, family=self.target.family, src=self.half, dst=self.full, method=self.method,
                     seed=self.seed, moments=self.moments)
        return Transition(f"bert2bert {self.method} width and depth growth", self.dims(False), op)
