"""The planner's pick and the budget its run decays at: pure functions over probe results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from megagrow.planner.curves import Lead
from megagrow.planner.probes import Candidate


@dataclass(frozen=True)
class ProbeResult:
    """A finished probe: ``lag`` steps after growing at ``candidate.growth_step``, its FLOPs and loss, its lead
    over scratch there, and the small model's lead right before the growth (``pre``)."""

    candidate: Candidate
    flops: float
    loss: float
    lead: Lead
    pre: Lead | None = None


def pick(results: Sequence[ProbeResult]) -> ProbeResult | None:
    """The probe furthest ahead of scratch; None when none is ahead (scratch is the recommendation). Ties go to
    the earlier growth point (the smaller extrapolation)."""
    ahead = [r for r in results if r.lead.flops > 0]
    if not ahead:
        return None
    return max(ahead, key=lambda r: (r.lead.flops, -r.candidate.growth_step))


def decay_budget(scratch_flops: float, lead_flops: float, keep: float) -> float:
    """The FLOPs the picked run should decay at: scratch's budget less the share ``keep`` of the lead. A run
    ahead of scratch by ``lead`` FLOPs is, by the planner's model, scratch ``lead`` FLOPs later; decaying at
    ``scratch_flops - lead`` would end at scratch's final loss exactly, so ``keep`` < 1 leaves a margin."""
    if not 0 <= keep <= 1:
        raise ValueError(f"--keep={keep}: the share of the lead to cash must be in [0, 1]")
    return scratch_flops - keep * max(lead_flops, 0.0)


def steps_for(flops_of: Callable[[int], float], target: float, lo: int, hi: int) -> int:
    """The smallest step count in [lo, hi] whose run costs at least ``target`` FLOPs (``flops_of`` increasing);
    ``lo`` if even it costs more, ``hi`` if even it costs less."""
    if flops_of(lo) >= target:
        return lo
    if flops_of(hi) < target:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if flops_of(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi
