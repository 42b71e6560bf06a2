"""Plans that train a half-size model (half the target's layers, hidden size, heads — head size kept — and FFN),
grow it once to the target at the single boundary ``growth.boundaries: [b]`` and train on: bert2BERT, MSG, LiGO.
They share this schedule; each adds its operator (``transition``) and phase names."""

from __future__ import annotations

from megagrow.growth.plans.base import Decision, StatelessPlan
from megagrow.growth.plans.staged import stage_starts
from megagrow.models.dims import Dims


class HalfToTargetPlan(StatelessPlan):
    """The half model until ``start``, the target from then on."""

    needs_model = True

    @classmethod
    def config_problems(cls, growth, model, max_steps: int) -> list[str]:
        p = []
        if len(growth.boundaries) != 1:
            p.append(f"growth.boundaries={growth.boundaries}: {cls.name} needs exactly one (the growth step)")
        for name, v in (("n_layers", model.n_layers), ("hidden", model.hidden),
                        ("n_heads", model.n_heads), ("ffn", model.ffn_dim)):
            if v % 2:
                p.append(f"model.{name}={v}: {cls.name} starts from half the target; must be even")
        return p

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        if model is None:
            raise ValueError(f"{self.name} needs the model config (build_plan(..., model=cfg.model))")
        if len(growth.boundaries) != 1:
            raise ValueError(f"growth.boundaries={growth.boundaries}: {self.name} needs exactly one (the growth step)")
        self.target, self.seed = model, seed
        self.starts = stage_starts(growth.boundaries, growth.boundary_unit, max_steps)
        self.start = self.starts[1]
        self.full = Dims.of(model)
        self.half = self.full.divided(2)

    def size(self, small: bool) -> Dims:
        return self.half if small else self.full

    def dims(self, small: bool) -> dict[str, int]:
        return self.size(small).arch()

    def arch_at(self, step: int) -> dict[str, int]:
        return self.dims(step < self.start)

    def decide(self, step: int, micro_step: int) -> Decision:
        small = step < self.start
        return Decision(phase=f"{self.name}-small" if small else f"{self.name}-target",
                        layer_map=tuple(range(self.size(small).n_layers)))

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return tuple(range(self.size(step < self.start).n_layers))
