"""One vocabulary for shapes: the families megagrow builds and the four numbers that size a transformer's blocks.
Every width or depth operator and every plan speaks in :class:`Dims`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from megagrow.flops import FAMILIES  # the model families (``model.family``), defined once at the bottom of the graph


@dataclass(frozen=True)
class Dims:
    """Layers, hidden size, attention heads and FFN width of a transformer stack."""

    n_layers: int
    hidden: int
    n_heads: int
    ffn: int

    @classmethod
    def of(cls, model: Any) -> Dims:
        """The dims of a :class:`~megagrow.models.spec.ModelConfig` (its resolved ``ffn_dim``)."""
        return cls(model.n_layers, model.hidden, model.n_heads, model.ffn_dim)

    def divided(self, k: int) -> Dims:
        """Every dim divided by ``k`` (the half model of bert2BERT, MSG and LiGO: k = 2; head size kept)."""
        return Dims(self.n_layers // k, self.hidden // k, self.n_heads // k, self.ffn // k)

    def arch(self) -> dict[str, int]:
        """The model fields a transition sets (``Transition.arch``, ``Plan.arch_at``)."""
        return {"n_layers": self.n_layers, "hidden": self.hidden, "n_heads": self.n_heads, "ffn": self.ffn}


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: must be one of {', '.join(FAMILIES)}")
    return family


__all__ = ["FAMILIES", "Dims", "check_family"]
