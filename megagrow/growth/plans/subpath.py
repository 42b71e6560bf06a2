"""Progressive sub-paths (RaPTr, Panigrahi et al. 2024; Apollo without a growth event): the full model from step 0,
each micro-batch running a sampled sub-path of its layers whose length grows over training.

``growth.stages = [k_1, ..., L]`` with ``growth.boundaries``: in stage s a micro-batch runs d layers, d drawn by
``growth.sampler`` from [k_s, L] (``live``: exactly k_s, RaPTr's fixed length per stage; ``lvps``: Apollo's
low-value-prioritized sampler, mostly short paths and a tail up to L; ``uniform``, ``edge``, ``full``). The path is
the first and the last layer and d - 2 of the layers between them, drawn uniformly without replacement and run in
order (RaPTr keeps the first and last layers in every path); the others are skipped (the identity on the residual
stream) and, in a step no micro-batch runs them, get no optimizer update at all. There is no transition: every
layer exists from step 0 and trains whenever a path holds it, so no layer is ever new. Evaluation runs the full
model. Draws are a pure function of (seed, step, micro-step), like Apollo's depths.
"""

from __future__ import annotations

import numpy as np

from megagrow.growth.plans.base import Decision
from megagrow.growth.plans.staged import StagedPlan
from megagrow.growth.samplers import get_sampler

PATH_STREAM = 0x70617468  # "path": the stream the path's layers are drawn from (depths use their own)


def sub_path(n_layers: int, depth: int, seed: int, step: int, micro_step: int) -> tuple[int, ...]:
    """The layers a micro-batch runs: all of them at full depth; else 0, L-1 and depth-2 of 1..L-2, in order."""
    if not 1 <= depth <= n_layers:
        raise ValueError(f"sub-path depth={depth}: must be in 1..{n_layers}")
    if depth == n_layers:
        return tuple(range(n_layers))
    if depth == 1:
        return (0,)
    rng = np.random.Generator(np.random.PCG64([seed, PATH_STREAM, step, micro_step]))
    middle = rng.choice(np.arange(1, n_layers - 1), size=depth - 2, replace=False) if depth > 2 else []
    return (0, *sorted(int(i) for i in middle), n_layers - 1)


class SubPathPlan(StagedPlan):
    name = "subpath"

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        super().__init__(n_layers, growth, seed, max_steps)
        self.sampler = get_sampler(growth.sampler if growth is not None else "live")
        self.depth_sampler = self.sampler.name

    def arch_at(self, step: int) -> dict[str, int]:
        return {"n_layers": self.n_max}  # the whole model from step 0: no transition

    def depth_pmf(self, step: int) -> dict[int, float]:
        """The distribution of the path length during step ``step`` (plan show's FLOPs)."""
        return {int(d): float(p) for d, p in self.sampler.pmf(self.live(step), self.n_max).items()}

    def decide(self, step: int, micro_step: int) -> Decision:
        k = self.live(step)
        d = self.sampler.sample(k, self.n_max, self.seed, step, micro_step)
        return Decision(phase=f"subpath-k{k}", layer_map=sub_path(self.n_max, d, self.seed, step, micro_step))

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return tuple(range(self.n_max))
