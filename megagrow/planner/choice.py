"""The planner's model, its pick and the budget the picked run decays at: pure functions over probe results.

The model is *token parity*. After one growth the grown model is the full model: from the same loss, trained on
the same tokens at the same LR, it descends as scratch does. So the per-step gap a probe shows ``lag`` steps after
its growth (its validation loss minus scratch's at the same step) is what the plan carries to the end: at gap <= 0
the plan at scratch's step budget ends at (or below) scratch's final loss while spending only what its small phase
saved; at gap > 0 it needs ``gap / slope`` more steps, ``slope`` being scratch's descent per step at the end of its
stable phase. On the gpt suite the gaps shrank after the probes (every probed recipe ended better than this
predicts), so the model is conservative. The FLOPs lead (:func:`megagrow.planner.curves.lead`) is reported beside
it: it ranks the same way but says nothing about the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from megagrow.planner.curves import Lead
from megagrow.planner.probes import Candidate


@dataclass(frozen=True)
class ProbeResult:
    """A finished probe: ``lag`` steps after growing at ``candidate.growth_step``, its FLOPs and loss, its leads
    over scratch (FLOPs; ``pre`` right before the growth), its per-step gap, and what the model predicts for its
    run: the steps it needs and the FLOPs saving (None: not predictable, e.g. scratch's reference too short)."""

    candidate: Candidate
    flops: float
    loss: float
    lead: Lead
    pre: Lead | None = None
    step_gap: float | None = None
    steps: int | None = None
    saving: float | None = None


def steps_needed(step_gap: float, slope_per_step: float, steps: int) -> int:
    """Token parity: the plan reaches scratch's final loss at ``steps`` when its per-step gap is <= 0, else
    ``gap / slope`` steps later (``slope`` > 0: scratch's descent per step where its stable phase ends)."""
    if step_gap <= 0:
        return steps
    if not slope_per_step > 0:
        raise ValueError(f"scratch's descent per step must be > 0 to price a gap (got {slope_per_step})")
    return steps + math.ceil(step_gap / slope_per_step)


def pick(results: Sequence[ProbeResult]) -> ProbeResult | None:
    """The probe with the largest predicted saving (> 0); None when none saves anything (train scratch). Ties go to
    the earlier growth point."""
    viable = [r for r in results if r.saving is not None and r.saving > 0]
    if not viable:
        return None
    return max(viable, key=lambda r: (r.saving, -r.candidate.growth_step))
