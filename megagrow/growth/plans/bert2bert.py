"""bert2BERT (Chen et al., ACL 2022): train a small model, then grow it in width (FPI or AKI, head-wise)
and depth (stacking) to the target, and keep training.

The small model here has half the target's width (hidden, heads — head size kept — and FFN) and half
its depth; the growth happens at the single boundary (``growth.boundaries: [b]``), with
``growth.b2b_method`` (``aki`` by default, as the paper's best) and moments copied with the weights.
"""

from __future__ import annotations

from functools import partial

from megagrow.growth.ops.bert2bert import bert2bert
from megagrow.growth.plans.base import Decision, StatelessPlan, Transition
from megagrow.growth.plans.staged import stage_starts


class Bert2BertPlan(StatelessPlan):
    name = "bert2bert"

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        if model is None:
            raise ValueError("bert2bert needs the model config (build_plan(..., model=cfg.model))")
        if len(growth.boundaries) != 1:
            raise ValueError(f"growth.boundaries={growth.boundaries}: bert2bert needs exactly one (the growth step)")
        self.target, self.seed = model, seed
        self.starts = stage_starts(growth.boundaries, growth.boundary_unit, max_steps)
        self.start = self.starts[1]
        self.method = growth.b2b_method
        self.moments = "copy" if growth.moments in ("auto", "copy", "keep") else "reset"

    def dims(self, small: bool) -> dict[str, int]:
        m, k = self.target, 2 if small else 1
        return {"n_layers": m.n_layers // k, "hidden": m.hidden // k, "n_heads": m.n_heads // k,
                "ffn": m.ffn_dim // k}

    def arch_at(self, step: int) -> dict[str, int]:
        return self.dims(step < self.start)

    def transition(self, step: int) -> Transition | None:
        if step != self.start:
            return None
        s, t = self.dims(True), self.dims(False)
        op = partial(bert2bert, family=self.target.family, hidden=s["hidden"], n_heads=s["n_heads"], ffn=s["ffn"],
                     n_layers=s["n_layers"], new_hidden=t["hidden"], new_heads=t["n_heads"], new_ffn=t["ffn"],
                     new_layers=t["n_layers"], method=self.method, seed=self.seed, moments=self.moments)
        return Transition(f"bert2bert {self.method} width and depth growth", t, op)

    def decide(self, step: int, micro_step: int) -> Decision:
        small = step < self.start
        return Decision(phase="bert2bert-small" if small else "bert2bert-target",
                        layer_map=tuple(range(self.dims(small)["n_layers"])))

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return tuple(range(self.dims(step < self.start)["n_layers"]))
