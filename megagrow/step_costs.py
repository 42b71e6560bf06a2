"""Wall time priced at measured step costs: a plan's wall-time saving without trusting one run's wall clock.

On a shared machine one run's step time moves by 5-10 % with the machine's state, as much as the effects to be
measured, and runs trained two at a time have no meaningful wall clock at all. So the step time of each shape a
plan runs (the full model, a half-width phase, a 3-layer stage, ...) is measured side by side in interleaved rounds
(``benchmarks/phase_cost.py`` writes the file read here), and a run's wall time to a point is the sum over its
logged intervals of steps x the step time of the shape the interval ran. Evaluation is excluded.

A logged interval belongs to the shape (hidden width, executed depth) recorded at its end. A depth between two
measured depths of its width (an Apollo interval's mean sampled depth) is interpolated linearly (a step costs a
fixed part plus a part per layer); a shape that cannot be priced that way (an MSG mask ramp's masked full model)
costs the full model's step, an upper bound.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Shape = tuple[int, float]  # (hidden width, executed depth)


@dataclass(frozen=True)
class StepCosts:
    """Seconds per optimizer step by shape, from one phase-cost measurement."""

    prices: dict[Shape, float]
    full: Shape
    source: str
    allocator: str

    def price(self, shape: Shape) -> tuple[float, str]:
        """Seconds per step of ``shape`` and how it was found (see the module doc)."""
        name = f"{shape[0]}x{shape[1]:g}"
        if shape in self.prices:
            return self.prices[shape], name
        depths = sorted(d for h, d in self.prices if h == shape[0])
        lo = max((d for d in depths if d <= shape[1]), default=None)
        hi = min((d for d in depths if d >= shape[1]), default=None)
        if lo is not None and hi is not None and lo != hi:
            f = (shape[1] - lo) / (hi - lo)
            p_lo, p_hi = self.prices[(shape[0], lo)], self.prices[(shape[0], hi)]
            return p_lo + f * (p_hi - p_lo), name + " (interpolated)"
        return self.prices[self.full], name + " (priced as full)"

    def wall(self, records: Sequence[dict[str, Any]], until_step: float) -> dict[str, float]:
        """Seconds to run the first ``until_step`` steps (fractional: a crossing) of a run's logged records
        (cumulative ``step``, ``hidden``, ``depth``), by shape."""
        out: dict[str, float] = {}
        prev = 0.0
        for rec in records:
            lo, hi = prev, min(float(rec["step"]), until_step)
            if hi > lo:
                s_per_step, name = self.price((int(rec["hidden"]), float(rec["depth"])))
                out[name] = out.get(name, 0.0) + (hi - lo) * s_per_step
            prev = float(rec["step"])
            if prev >= until_step:
                break
        return out


def _shape(overrides: Sequence[str], full: Shape) -> tuple[Shape, bool]:
    """A phase-cost row's shape from its config overrides, and whether it ran at the suite's own batch."""
    vals = dict(o.removeprefix("--").split("=", 1) for o in overrides)
    shape = (int(vals.get("model.hidden", full[0])), float(vals.get("model.n_layers", full[1])))
    return shape, not any(k in vals for k in ("data.micro_batch_size", "train.grad_accum"))


def step_costs(phase_cost: dict[str, Any], allocator: str, full: Shape, source: str = "") -> StepCosts:
    """The step times of ``phase_cost`` (a ``benchmarks/phase_cost.py`` result) measured under ``allocator`` at
    the suite's own batch. ``full``: the (hidden, depth) of the full model, whose row has no shape overrides."""
    prices: dict[Shape, float] = {}
    for row in phase_cost.get("rows", []):
        if row.get("allocator") != allocator:
            continue
        shape, same_batch = _shape(row.get("overrides", []), full)
        if same_batch:
            prices[shape] = float(row["s_per_step"])
    if full not in prices:
        have = sorted({r.get("allocator") for r in phase_cost.get("rows", [])})
        raise ValueError(f"step costs {source or '(given)'}: no row for the full model {full[0]}x{full[1]:g} under "
                         f"allocator {allocator!r} (allocators in the file: {', '.join(map(str, have))})")
    return StepCosts(prices, full, source, allocator)


def load_step_costs(path: str | Path, allocator: str, full: Shape) -> StepCosts:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"step costs: {p} does not exist (benchmarks/phase_cost.py writes it)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"step costs: {p} is not JSON ({e})") from None
    return step_costs(data, allocator, full, str(p))
