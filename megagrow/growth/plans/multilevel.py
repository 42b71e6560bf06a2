"""Multi-level training (Zou et al., ICLR 2024): a V-cycle of coalescing and de-coalescing.

With 2 levels and boundaries ``[b1, b2]``: train the target model until b1, snapshot it and coalesce it
to half width and half depth (hidden, heads and FFN halved, head size kept; layers merged in pairs),
train the small model (at ``growth.multilevel.coarse_lr_mult`` times the LR) until b2, then de-coalesce it back and
interpolate with the snapshot, ``(1 - alpha) * decoalesced + alpha * snapshot``, and train the target
model to the end. 3 levels take boundaries ``[b1, b2, b3, b4]``: two coalescings, then two
de-coalescings in reverse order. The snapshots are plan state: they are saved with every checkpoint
taken while a coarse level runs, so resuming inside the V-cycle is exact.

As in the reference scripts, ``growth.lr_policy: auto`` gives every phase a fresh schedule (warmup only
in the first, then decay over the phase), scaled by ``coarse_lr_mult`` on coarse levels, and moments
follow ``growth.moments`` (auto = reset at every transition: each reference stage is a fresh optimizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from megagrow.fields import doc
from megagrow.growth.ops.multilevel import coalesce, decoalesce, interpolate
from megagrow.growth.plans.base import Decision, MethodOptions, StatelessPlan, Transition
from megagrow.growth.plans.staged import stage_starts
from megagrow.models.dims import Dims
from megagrow.state import FullState

PAPER_ALPHA = {"bert": 0.5, "gpt": 0.25, "deit": 0.25}


@dataclass
class MultilevelOptions(MethodOptions):
    """``growth.multilevel:`` (docs/methods/multilevel.md; apollo+multilevel reads it too)."""

    levels: int = doc("number of levels of the V-cycle (2 or 3); growth.boundaries needs 2 * (levels - 1)", 2)
    alpha: float | None = doc("interpolation weight of the pre-coalescing model; none = the paper's default (bert "
                              "0.5, gpt/deit 0.25)", None)
    coarse_lr_mult: float = doc("LR multiplier per coarsening level (the paper's small model: 4x)", 4.0)
    width_pairing: Literal["half", "adjacent"] = doc("merge unit i with i + n/2 (the paper's) or i + 1", "half")
    depth_pairing: Literal["adjacent", "half"] = doc("merge layers 2i, 2i + 1 (the paper's) or i, i + L/2",
                                                     "adjacent")
    depth_decoalesce: Literal["copy", "zero"] = doc(
        "the fine layers a coarse layer becomes at de-coalescing: copy (the paper's: each a copy, so the layer runs "
        "twice) or zero (the first a copy, the others with their residual-writing projections attn.proj and "
        "mlp.fc_out zeroed: identity blocks in a pre-LN model, so depth de-coalescing preserves its function)", "copy")
    residual_scale: bool = doc(
        "gpt only: also scale the residual-writing projections x2 when coalescing and x0.5 when de-coalescing, so "
        "that width de-coalescing preserves a pre-LN model's function (the paper's does not)", False)
    resume_rules: ClassVar[dict[str, tuple[str, str]]] = {
        "coarse_lr_mult": ("allowable", "LR multiplier of coarse phases")}
    lr_fields: ClassVar[tuple[str, ...]] = ("coarse_lr_mult",)

    def problems(self) -> list[str]:
        p = []
        if self.levels not in (2, 3):
            p.append(f"growth.multilevel.levels={self.levels}: must be 2 or 3")
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            p.append(f"growth.multilevel.alpha={self.alpha}: must be in [0, 1]")
        if not self.coarse_lr_mult > 0:
            p.append(f"growth.multilevel.coarse_lr_mult={self.coarse_lr_mult}: must be > 0")
        return p


class MultiLevelPlan(StatelessPlan):
    name = "multilevel"
    section = "multilevel"
    lr_policy = "reset"  # every stage of the reference is a fresh trainer with its own schedule
    needs_model = True

    @classmethod
    def config_problems(cls, growth, model, max_steps: int) -> list[str]:
        o, p = growth.multilevel, []
        if o.levels not in (2, 3):
            return p  # named by the options' own check
        if len(growth.boundaries) != 2 * (o.levels - 1):
            p.append(f"growth.boundaries={growth.boundaries}: {cls.name} with {o.levels} levels needs "
                     f"{2 * (o.levels - 1)} (coalesce, ..., de-coalesce)")
        div = 2 ** (o.levels - 1)
        for name, v in (("n_layers", model.n_layers), ("hidden", model.hidden), ("n_heads", model.n_heads),
                        ("ffn", model.ffn_dim)):
            if v % div:
                p.append(f"model.{name}={v}: {cls.name} with {o.levels} levels halves it {o.levels - 1} time(s); "
                         f"must be divisible by {div}")
        if o.residual_scale and model.family != "gpt":
            p.append(f"growth.multilevel.residual_scale=true: only for model.family='gpt' (this is "
                     f"{model.family!r}; its width de-coalescing already preserves the function)")
        return p

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        if model is None:
            raise ValueError("multilevel needs the model config (build_plan(..., model=cfg.model))")
        self.target = model
        o = growth.multilevel
        self.levels = o.levels
        self.starts = stage_starts(growth.boundaries, growth.boundary_unit, max_steps)
        # level in effect in each phase: 0, 1, ..., L-1, ..., 1, 0
        down = list(range(self.levels))
        self.phase_levels = down + down[-2::-1]
        self.alpha = PAPER_ALPHA[model.family] if o.alpha is None else o.alpha
        self.lr_mult = o.coarse_lr_mult
        self.width_pairing, self.depth_pairing = o.width_pairing, o.depth_pairing
        self.depth_decoalesce = o.depth_decoalesce
        self.residual_scale = o.residual_scale
        self.moments = "reset" if growth.moments in ("auto", "reset", "fresh") else "map"
        self._snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def phase(self, step: int) -> int:
        return max(i for i, s in enumerate(self.starts) if s <= step)

    def level(self, step: int) -> int:
        return self.phase_levels[self.phase(step)]

    def size(self, level: int) -> Dims:
        """The model's sizes at ``level`` (level 0 the target; each level halves every one)."""
        return Dims.of(self.target).divided(2**level)

    def dims(self, level: int) -> dict[str, int]:
        return self.size(level).arch()

    def arch_at(self, step: int) -> dict[str, int]:
        return self.dims(self.level(step))

    def lr_scale(self, step: int) -> float:
        return self.lr_mult ** self.level(step)

    def _options(self) -> dict[str, Any]:
        return dict(width_pairing=self.width_pairing, depth_pairing=self.depth_pairing, moments=self.moments,
                    gpt_residual_scale=self.residual_scale)

    def transition(self, step: int) -> Transition | None:
        i = self.phase(step)
        if i == 0 or self.starts[i] != step:
            return None
        old, new = self.phase_levels[i - 1], self.phase_levels[i]
        if new > old:
            def down(state: FullState) -> FullState:
                self._snapshots[old] = {k: v.clone() for k, v in state.params.items()}
                return coalesce(state, self.target.family, self.size(old), **self._options())

            return Transition(f"coalesce L{old}->L{new}", self.dims(new), down)

        def up(state: FullState) -> FullState:
            fine = decoalesce(state, self.target.family, self.size(old), **self._options(),
                              depth_new=self.depth_decoalesce)
            return interpolate(fine, FullState(self._snapshots.pop(new)), self.alpha)

        how = [*(["second layers as identity blocks"] if self.depth_decoalesce == "zero" else []),
               *(["residual writers scaled"] if self.residual_scale else [])]
        detail = f" ({', '.join(how)})" if how else ""
        return Transition(f"de-coalesce L{old}->L{new}{detail} + interpolate (alpha={self.alpha})", self.dims(new), up)

    def decide(self, step: int, micro_step: int) -> Decision:
        level = self.level(step)
        return Decision(phase=f"multilevel-L{level}", layer_map=tuple(range(self.size(level).n_layers)))

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return tuple(range(self.size(self.level(step)).n_layers))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"snapshot.{level}.{k}": v for level, snap in self._snapshots.items() for k, v in snap.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self._snapshots = {}
        for key, v in tensors.items():
            tag, level, name = key.split(".", 2)
            if tag != "snapshot":
                raise ValueError(f"multilevel plan state: unexpected tensor {key!r}")
            self._snapshots.setdefault(int(level), {})[name] = v
