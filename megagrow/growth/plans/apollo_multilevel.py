"""``apollo+multilevel``: Apollo's depth lessons inside Multi-Level's width V-cycle (our combination).

The V-cycle is :class:`~megagrow.growth.plans.multilevel.MultiLevelPlan`'s (same boundaries, alpha, LR
multiplier and moment policy). What changes is how a coarse level trains. A level-``l`` model holds
``N = L / 2^l`` weight slots, and de-coalescing it will execute every slot ``2^l`` times in a row
(adjacent depth pairing: fine layers ``2i, 2i+1`` are copies of coarse slot ``i``), which is exactly
Apollo's interpolation map ``phi(i) = floor(i*N/d)`` at ``d = L``. So on a coarse level every micro-batch
draws a depth ``d in [N, L]`` with ``growth.sampler`` (LVPS by default) and runs that map: the coarse
slots learn, cheaply and mostly at small depths, to work as the stacked copies they will become, while
the fine levels train at full depth as in plain multi-level training. With ``depth_pairing: half``
(de-coalescing stacks ``[l0..l_{N-1}, l0..l_{N-1}]``) the stacking map is used instead, for the same
reason. Coarse levels are evaluated at depth ``L`` through that map (as Apollo evaluates).

Cost: a coarse micro-batch costs ``E[d]`` layers at the coarse width (``pmf`` from the sampler), which
``megagrow plan show`` reports; the fine levels cost what multi-level costs.
"""

from __future__ import annotations

from megagrow.growth.ops.depth import layer_map
from megagrow.growth.plans.base import Decision
from megagrow.growth.plans.multilevel import MultiLevelPlan
from megagrow.growth.samplers import get_sampler


class ApolloMultiLevelPlan(MultiLevelPlan):
    name = "apollo+multilevel"

    def __init__(self, n_layers: int, growth, seed: int = 0, max_steps: int = 0, model=None):
        super().__init__(n_layers, growth, seed, max_steps, model=model)
        self.seed = seed
        self.n_max = model.n_layers
        self.sampler = get_sampler(growth.sampler)
        self.map_kind = "interpolation" if self.depth_pairing == "adjacent" else "stacking"
        self.depth_sampler = self.sampler.name

    def depth_pmf(self, step: int) -> dict[int, float]:
        n = self.size(self.level(step)).n_layers
        return {int(d): float(q) for d, q in self.sampler.pmf(n, self.n_max).items()}

    def decide(self, step: int, micro_step: int) -> Decision:
        level = self.level(step)
        n = self.size(level).n_layers
        d = self.sampler.sample(n, self.n_max, self.seed, step, micro_step) if level else n
        return Decision(phase=f"apollo+multilevel-L{level}", layer_map=tuple(layer_map(self.map_kind, n, d)))

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        return tuple(layer_map(self.map_kind, self.size(self.level(step)).n_layers, self.n_max))
