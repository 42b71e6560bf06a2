"""Each family's parameters along the width axes: which dims of a tensor are the hidden size (``e``), the
attention channels (``a``) or the FFN units (``f``), as rows (``out``) or columns (``in``). Every width operator
(Multi-level's coalescing, bert2BERT, MSG, LiGO) reads its maps from here."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class WidthSpec:
    """How one parameter maps: ``axes`` = (dim, grouping key, "out"|"in") on the tensor (or on its
    ``[3, ...]`` view when ``fused3``), ``scale`` = the coalescing multiplier (de-coalescing divides)."""

    axes: tuple[tuple[int, str, str], ...]
    scale: float = 1.0
    fused3: bool = False


_OUT_E = WidthSpec(((0, "e", "out"),))
_COPY = WidthSpec(())

_BLOCK_SPECS: dict[str, WidthSpec] = {
    "attn.qkv.weight": WidthSpec(((1, "a", "out"), (2, "e", "in")), fused3=True),
    "attn.qkv.bias": WidthSpec(((1, "a", "out"),), fused3=True),
    "attn.proj.weight": WidthSpec(((0, "e", "out"), (1, "a", "in"))),
    "attn.proj.bias": _OUT_E,
    "mlp.fc_in.weight": WidthSpec(((0, "f", "out"), (1, "e", "in"))),
    "mlp.fc_in.bias": WidthSpec(((0, "f", "out"),)),
    "mlp.fc_out.weight": WidthSpec(((0, "e", "out"), (1, "f", "in"))),
    "mlp.fc_out.bias": _OUT_E,
    "ln_1.weight": _OUT_E,
    "ln_1.bias": _OUT_E,
    "ln_2.weight": _OUT_E,
    "ln_2.bias": _OUT_E,
}
#: The parameters through which a pre-LN block writes to the residual stream: zeroed, the block is the identity.
RESIDUAL_WRITERS = ("attn.proj.weight", "attn.proj.bias", "mlp.fc_out.weight", "mlp.fc_out.bias")

_EMBED_TABLES = ("embed.tokens.weight", "embed.positions.weight", "embed.token_types.weight")
_OTHER_SPECS: dict[str, dict[str, WidthSpec]] = {
    "bert": {
        **{n: WidthSpec(((1, "e", "out"),), scale=2.0) for n in _EMBED_TABLES},
        "embed.ln.weight": _OUT_E,
        "embed.ln.bias": _OUT_E,
        "mlm.dense.weight": WidthSpec(((0, "e", "out"), (1, "e", "in"))),
        "mlm.dense.bias": _OUT_E,
        "mlm.ln.weight": _OUT_E,
        "mlm.ln.bias": _OUT_E,
        "mlm.bias": _COPY,
        "final_ln.weight": _OUT_E,  # model.bert_pre_ln
        "final_ln.bias": _OUT_E,
    },
    "gpt": {
        **{n: WidthSpec(((1, "e", "out"),), scale=2.0) for n in _EMBED_TABLES[:2]},
        "final_ln.weight": _OUT_E,
        "final_ln.bias": _OUT_E,
    },
    "deit": {
        "patch_embed.proj.weight": _OUT_E,
        "patch_embed.proj.bias": _OUT_E,
        "cls_token": WidthSpec(((2, "e", "out"),)),
        "dist_token": WidthSpec(((2, "e", "out"),)),
        "pos_embed": WidthSpec(((2, "e", "out"),)),
        "final_ln.weight": _OUT_E,
        "final_ln.bias": _OUT_E,
        "head.weight": WidthSpec(((1, "e", "in"),)),
        "head.bias": _COPY,
        "head_dist.weight": WidthSpec(((1, "e", "in"),)),
        "head_dist.bias": _COPY,
    },
}


def width_spec(name: str, family: str, gpt_residual_scale: bool = False) -> WidthSpec:
    m = _BLOCK.match(name)
    if m is not None and m.group(2) in _BLOCK_SPECS:
        spec = _BLOCK_SPECS[m.group(2)]
        if gpt_residual_scale and m.group(2) in RESIDUAL_WRITERS:
            spec = WidthSpec(spec.axes, scale=2.0, fused3=spec.fused3)
        return spec
    spec = _OTHER_SPECS[family].get(name)
    if spec is None:
        raise ValueError(f"width map: unknown {family} parameter {name!r}")
    return spec


def width_axes(name: str, family: str) -> tuple[tuple[tuple[int, str, str], ...], bool]:
    """The width roles of parameter ``name``: ``((dim, key, role), ...)`` with key ``e`` (hidden), ``a``
    (attention channels) or ``f`` (FFN) and role ``out``/``in``, and whether it is the fused ``[3, ...]``
    Q/K/V tensor (dims then refer to its ``[3, d, ...]`` view). Shared with other width operators (LiGO)."""
    spec = width_spec(name, family)
    return spec.axes, spec.fused3


__all__ = ["RESIDUAL_WRITERS", "WidthSpec", "width_axes", "width_spec"]
