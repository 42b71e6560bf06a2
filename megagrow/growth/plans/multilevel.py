"""Multi-level training (Zou et al., ICLR 2024): a V-cycle of coalescing and de-coalescing.

With 2 levels and boundaries ``[b1, b2]``: train the target model until b1, snapshot it and coalesce it
to half width and half depth (hidden, heads and FFN halved, head size kept; layers merged in pairs),
train the small model (at ``coarse_lr_mult`` times the LR) until b2, then de-coalesce it back and
interpolate with the snapshot, ``(1 - alpha) * decoalesced + alpha * snapshot``, and train the target
model to the end. 3 levels take boundaries ``[b1, b2, b3, b4]``: two coalescings, then two
de-coalescings in reverse order. The snapshots are plan state: they are saved with every checkpoint
taken while a coarse level runs, so resuming inside the V-cycle is exact.

As in the reference scripts, ``growth.lr_policy: auto`` gives every phase a fresh schedule (warmup only
in the first, then decay over the phase), scaled by ``coarse_lr_mult`` on coarse levels, and moments
follow ``growth.moments`` (auto = reset at every transition: each reference stage is a fresh optimizer).
"""

from __future__ import annotations

from typing import Any

import torch

from megagrow.growth.ops.multilevel import coalesce, decoalesce, interpolate
from megagrow.growth.plans.base import Decision, StatelessPlan, Transition
from megagrow.growth.plans.staged import stage_starts
from megagrow.state import FullState

PAPER_ALPHA = {"bert": 0.5, "gpt": 0.25, "deit": 0.25}


class MultiLevelPlan(StatelessPlan):
    name = "multilevel"
    lr_policy = "reset"  # every stage of the reference is a fresh trainer with its own schedule
    needs_model = True

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        if model is None:
            raise ValueError("multilevel needs the model config (build_plan(..., model=cfg.model))")
        self.target = model
        self.levels = growth.levels
        self.starts = stage_starts(growth.boundaries, growth.boundary_unit, max_steps)
        # level in effect in each phase: 0, 1, ..., L-1, ..., 1, 0
        down = list(range(self.levels))
        self.phase_levels = down + down[-2::-1]
        self.alpha = PAPER_ALPHA[model.family] if growth.alpha is None else growth.alpha
        self.lr_mult = growth.coarse_lr_mult
        self.width_pairing, self.depth_pairing = growth.width_pairing, growth.depth_pairing
        self.depth_decoalesce = growth.depth_decoalesce
        self.residual_scale = growth.residual_scale
        self.moments = "reset" if growth.moments in ("auto", "reset", "fresh") else "map"
        self._snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def phase(self, step: int) -> int:
        return max(i for i, s in enumerate(self.starts) if s <= step)

    def level(self, step: int) -> int:
        return self.phase_levels[self.phase(step)]

    def dims(self, level: int) -> dict[str, int]:
        m, k = self.target, 2**level
        return {"n_layers": m.n_layers // k, "hidden": m.hidden // k, "n_heads": m.n_heads // k,
                "ffn": m.ffn_dim // k}

    def arch_at(self, step: int) -> dict[str, int]:
        return self.dims(self.level(step))

    def lr_scale(self, step: int) -> float:
        return self.lr_mult ** self.level(step)

    def _sizes(self, level: int) -> dict[str, Any]:
        d = self.dims(level)
        return dict(family=self.target.family, hidden=d["hidden"], n_heads=d["n_heads"], ffn=d["ffn"],
                    n_layers=d["n_layers"], width_pairing=self.width_pairing, depth_pairing=self.depth_pairing,
                    moments=self.moments, gpt_residual_scale=self.residual_scale)

    def transition(self, step: int) -> Transition | None:
        i = self.phase(step)
        if i == 0 or self.starts[i] != step:
            return None
        old, new = self.phase_levels[i - 1], self.phase_levels[i]
        if new > old:
            def down(state: FullState) -> FullState:
                self._snapshots[old] = {k: v.clone() for k, v in state.params.items()}
                return coalesce(state, **self._sizes(old))

            return Transition(f"coalesce L{old}->L{new}", self.dims(new), down)

        def up(state: FullState) -> FullState:
            fine = decoalesce(state, **self._sizes(old), depth_new=self.depth_decoalesce)
            return interpolate(fine, FullState(self._snapshots.pop(new)), self.alpha)

        how = [*(["second layers as identity blocks"] if self.depth_decoalesce == "zero" else []),
               *(["residual writers scaled"] if self.residual_scale else [])]
        detail = f" ({', '.join(how)})" if how else ""
        return Transition(f"de-coalesce L{old}->L{new}{detail} + interpolate (alpha={self.alpha})", self.dims(new), up)

    def decide(self, step: int, micro_step: int) -> Decision:
        level = self.level(step)
        return Decision(phase=f"multilevel-L{level}", layer_map=tuple(range(self.dims(level)["n_layers"])))

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return tuple(range(self.dims(self.level(step))["n_layers"]))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"snapshot.{level}.{k}": v for level, snap in self._snapshots.items() for k, v in snap.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self._snapshots = {}
        for key, v in tensors.items():
            tag, level, name = key.split(".", 2)
            if tag != "snapshot":
                raise ValueError(f"multilevel plan state: unexpected tensor {key!r}")
            self._snapshots.setdefault(int(level), {})[name] = v
