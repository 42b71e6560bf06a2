"""Growth masks: an optional third forward argument that scales the units a growth step added.

MSG (masked structural growth, ``megagrow.growth.ops.msg``) grows a model and multiplies the new units by
a factor ``c`` ramping from 0 to 1; at ``c = 0`` the grown model computes the old function. The models
apply a :class:`GrowthMasks` exactly where the reference ``msg_forward`` does:

* every LayerNorm over the hidden dimension becomes :func:`masked_layernorm` (mask-weighted statistics)
  and its output is multiplied by the hidden mask;
* the embedding output (before dropout) is multiplied by the hidden mask;
* each attention head's output is multiplied by its head-mask entry before the output projection;
* the MLP activation (GELU output) is multiplied by the FFN mask before ``fc_out``;
* a slot with layer factor ``c != 1`` computes ``c * Block(h) + (1 - c) * h``.

``masks=None`` (or a ``None`` field) leaves that part of the forward exactly as it is without masks.
This module imports nothing from ``megagrow.growth``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


def masked_layernorm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """Mask-weighted LayerNorm over the last dim: ``μ = Σ c_i x_i / Σ c_i``,
    ``σ² = Σ c_i (x_i − μ)² / Σ c_i``, ``y = (x − μ) / sqrt(σ² + eps) * weight + bias``.
    Channels with ``c_i = 0`` do not enter the statistics; ``mask=None`` is the plain LayerNorm.
    (The output is *not* multiplied by the mask here; the forward does that.)"""
    if mask is None:
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
    c = mask.to(x.dtype)
    total = c.sum()
    mu = (x * c).sum(-1, keepdim=True) / total
    var = (((x - mu) ** 2) * c).sum(-1, keepdim=True) / total
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


@dataclass(frozen=True, eq=False)
class GrowthMasks:
    """Per-dimension masks of one growth step: ``hidden`` [d], ``heads`` [H], ``ffn`` [ffn] (1-D tensors),
    ``layers`` one factor per weight slot (``None`` fields: that dimension is unmasked)."""

    hidden: torch.Tensor | None = None
    heads: torch.Tensor | None = None
    ffn: torch.Tensor | None = None
    layers: tuple[float, ...] | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GrowthMasks):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
                if a.shape != b.shape or not torch.equal(a.cpu(), b.cpu()):
                    return False
            elif isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) or a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def to(self, device: torch.device | str) -> GrowthMasks:
        """The same masks with the tensors on ``device``."""
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return GrowthMasks(mv(self.hidden), mv(self.heads), mv(self.ffn), self.layers)

    def layer_factor(self, slot: int) -> float:
        return 1.0 if self.layers is None else float(self.layers[slot])


def apply_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x * mask`` over the last dim (in ``x``'s dtype); ``x`` itself for ``mask=None``."""
    return x if mask is None else x * mask.to(x.dtype)


def hidden_ln(ln: nn.LayerNorm, x: torch.Tensor, masks: GrowthMasks | None) -> torch.Tensor:
    """``ln(x)``, or with a hidden mask the mask-weighted LayerNorm times the mask."""
    if masks is None or masks.hidden is None:
        return ln(x)
    return apply_mask(masked_layernorm(x, ln.weight, ln.bias, masks.hidden, ln.eps), masks.hidden)


__all__ = ["GrowthMasks", "apply_mask", "hidden_ln", "masked_layernorm"]
