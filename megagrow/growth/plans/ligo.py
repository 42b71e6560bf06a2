"""LiGO (Wang et al., ICLR 2023): train a small model, then grow it with a *learned* linear operator.

The small model has half the target's width (hidden, heads — head size kept — and FFN) and half its depth,
as for bert2BERT, so the two compare in one setup. At the single boundary (``growth.boundaries: [b]``) the
transition is learned: the operator (:mod:`megagrow.growth.ops.ligo`) is trained for ``growth.ligo.steps``
AdamW steps at ``growth.ligo.lr`` (constant; default ``optim.lr``) on the grown model's loss over the run's
own data (each step one global batch, charged its FLOPs and tokens, small weights frozen), then the grown
model is materialized and trained normally with a fresh optimizer and the global LR schedule continuing
("train normally, no warmup" in the reference). The operator steps are extra work inside the boundary step;
they do not count as training steps of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from megagrow.fields import doc
from megagrow.growth.ops.ligo import LigoShape, fit_operator, init_operator, materialize, materialize_flops
from megagrow.growth.plans.base import FitContext, MethodOptions, Transition
from megagrow.growth.plans.half import HalfToTargetPlan
from megagrow.state import FullState


@dataclass
class LigoOptions(MethodOptions):
    """``growth.ligo:`` (docs/methods/ligo.md)."""

    steps: int = doc("optimizer steps training the growth operator (small weights frozen) at the growth step; each "
                     "uses one global batch of the run's data and is charged its FLOPs", 100)
    lr: float | None = doc("LR of the operator training (constant); none = optim.lr", None)
    width_init: Literal["rand", "sel"] = doc(
        "init of the width expanders: rand (new units = random convex combinations of old units, the reference "
        "default) or sel (random copies)", "rand")
    depth_noise: float = doc("U(0, noise) added to the stacking init of the depth coefficients", 0.03)

    def problems(self) -> list[str]:
        p = []
        if self.steps < 0:
            p.append(f"growth.ligo.steps={self.steps}: must be >= 0")
        if self.lr is not None and not self.lr > 0:
            p.append(f"growth.ligo.lr={self.lr}: must be > 0 (or none for optim.lr)")
        if self.depth_noise < 0:
            p.append(f"growth.ligo.depth_noise={self.depth_noise}: must be >= 0")
        return p


class LigoPlan(HalfToTargetPlan):
    name = "ligo"
    section = "ligo"

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        if growth.moments not in ("auto", "fresh", "reset"):
            raise ValueError(f"growth.moments={growth.moments!r}: ligo starts the grown model with a fresh "
                             "optimizer (auto/fresh/reset); moments cannot follow a learned operator")
        super().__init__(n_layers, growth, seed, max_steps, model)
        o = growth.ligo
        self.steps, self.lr, self.width_init, self.depth_noise = o.steps, o.lr, o.width_init, o.depth_noise

    def shape(self) -> LigoShape:
        return LigoShape(self.target.family, self.half, self.full)

    def _untrained(self, state: FullState) -> FullState:
        op = init_operator(state.params, self.shape(), self.width_init, self.depth_noise, self.seed)
        return FullState(materialize(state.params, op, self.shape())[0])

    def _fit(self, state: FullState, ctx: FitContext) -> FullState:
        def on_step(step: int, loss: float) -> None:
            if step == 0 or (step + 1) % max(1, self.steps // 5) == 0:
                ctx.log(f"ligo operator step {step + 1}/{self.steps}: loss {loss:.4f}")

        r = fit_operator(state, self.shape(), ctx.loss, self.steps, ctx.grad_accum,
                         lr=self.lr if self.lr is not None else ctx.lr, betas=ctx.betas, eps=ctx.eps,
                         width_init=self.width_init, depth_noise=self.depth_noise, seed=self.seed,
                         device=ctx.device, all_reduce_mean=ctx.all_reduce_mean, on_step=on_step)
        ctx.charge_flops(r.flops)
        return r.state

    def transition(self, step: int) -> Transition | None:
        if step != self.start:
            return None
        t = self.dims(False)
        return Transition(f"ligo growth ({self.steps} operator steps)", t, self._untrained, fit=self._fit,
                          fit_steps=self.steps, fit_flops=partial(_fit_flops, shape=self.shape()))



def _fit_flops(shapes: dict[str, tuple[int, ...]], shape: LigoShape) -> int:
    """Operator FLOPs per operator-training micro-batch: one materialization, forward + backward."""
    return 3 * materialize_flops(shapes, shape)
