"""``FullState``: the full (unsharded) training state, keyed by stable parameter name.

fp32 parameters plus the AdamW moments and step — independent of sharding, ZeRO stage and world size.
It is what a universal checkpoint holds and what every growth operator transforms
(``FullState(old architecture) -> FullState(new architecture)``). Only torch here: growth operators
and checkpoints use it without DeepSpeed; :mod:`megagrow.distributed.state` moves it in and out of
engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

MOMENTS = ("exp_avg", "exp_avg_sq")


@dataclass
class FullState:
    """Full (unsharded) fp32 training state keyed by parameter name."""

    params: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor] = field(default_factory=dict)
    exp_avg_sq: dict[str, torch.Tensor] = field(default_factory=dict)
    adam_step: int = 0

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
