"""``FullState``: the full (unsharded) training state, keyed by stable parameter name.

fp32 parameters plus the AdamW moments and step counts — independent of sharding, ZeRO stage and world size.
It is what a universal checkpoint holds and what every growth operator transforms
(``FullState(old architecture) -> FullState(new architecture)``). Only torch here: growth operators
and checkpoints use it without DeepSpeed; :mod:`megagrow.distributed.full_state` moves it in and out of
engines.

**Step counts.** AdamW's bias correction uses each parameter's own step count (torch keeps one per
parameter). A parameter that becomes live late — a growth operator gave it zero moments — must start at
step 0, exactly like a parameter added to a fresh optimizer; otherwise its first update is bias-corrected
with the global step and is ~3x a fresh one. ``adam_step`` is the global (largest) step; ``param_steps``
lists the parameters whose step differs from it (a name not listed has ``adam_step``), so a state from
before per-parameter steps, or one where every parameter shares a step, has ``param_steps == {}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

MOMENTS = ("exp_avg", "exp_avg_sq")


def split_steps(steps: Mapping[str, int]) -> tuple[int, dict[str, int]]:
    """Every parameter's step -> ``(adam_step, param_steps)``: their largest step (0 when empty) and the
    parameters whose step differs from it — the normal form :class:`FullState` holds."""
    values = {name: int(s) for name, s in steps.items()}
    if any(s < 0 for s in values.values()):
        raise ValueError(f"negative AdamW step counts: {sorted(n for n, s in values.items() if s < 0)[:5]}")
    top = max(values.values(), default=0)
    return top, {name: s for name, s in values.items() if s != top}


def source_step(steps: Mapping[str, int], sources: Iterable[str]) -> int:
    """The step count a parameter built from several source parameters carries: the largest of theirs.

    Growth operators that average or interpolate parameters (multi-level depth coalescing) mix sources
    that were live together, so their steps are equal in practice; where they are not, the most-trained
    source dominates the moments' scale and its (larger) count keeps the bias correction from inflating
    the first updates."""
    return max(int(steps[s]) for s in sources)


@dataclass
class FullState:
    """Full (unsharded) fp32 training state keyed by parameter name.

    ``adam_step`` is the global (largest) AdamW step; ``param_steps`` the parameters whose step differs
    from it (see the module docstring). Use :meth:`step_of` to read a parameter's step."""

    params: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor] = field(default_factory=dict)
    exp_avg_sq: dict[str, torch.Tensor] = field(default_factory=dict)
    adam_step: int = 0
    param_steps: dict[str, int] = field(default_factory=dict)

    def step_of(self, name: str) -> int:
        """The AdamW step count of parameter ``name`` (``adam_step`` unless listed in ``param_steps``)."""
        return int(self.param_steps.get(name, self.adam_step))

    def steps(self) -> dict[str, int]:
        """Every parameter's step count, in ``params`` order."""
        return {name: self.step_of(name) for name in self.params}

    def has_optimizer_state(self) -> bool:
        return bool(self.exp_avg) and self.adam_step > 0

    def check_against(self, names_shapes: dict[str, tuple[int, ...]], where: str) -> None:
        """Raise a clear error unless this state has exactly these parameters and shapes."""
        missing = sorted(set(names_shapes) - set(self.params))
        extra = sorted(set(self.params) - set(names_shapes))
        bad = sorted(n for n in set(names_shapes) & set(self.params)
                     if tuple(self.params[n].shape) != tuple(names_shapes[n]))
        if missing or extra or bad:
            detail = [f"missing {missing[:5]}" if missing else "", f"unexpected {extra[:5]}" if extra else "",
                      ", ".join(f"{n}: {tuple(self.params[n].shape)} vs model {names_shapes[n]}"
                                for n in bad[:5])]
            raise ValueError(f"{where}: state does not match the model: " + "; ".join(d for d in detail if d))


def with_steps(params: dict[str, torch.Tensor], exp_avg: dict[str, torch.Tensor],
               exp_avg_sq: dict[str, torch.Tensor], steps: Mapping[str, int]) -> FullState:
    """A :class:`FullState` from every parameter's step count (normalized by :func:`split_steps`)."""
    adam_step, param_steps = split_steps(steps)
    return FullState(params=params, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, adam_step=adam_step,
                     param_steps=param_steps)
