"""MSG (masked structural growth): grown state + mask bookkeeping + a reference masked forward.

Spec: ``docs/methods/msg.md``. Pure functions (stdlib + torch + ``megagrow.state``
+ sibling ops modules).

**Operator** :func:`msg_grow`: width (hidden with heads of a fixed head size, FFN) and/or depth growth.
Every old tensor is copied into the leading ("top-left") corner of the larger one; all new entries are
fresh: weights and embedding columns ``N(0, init_std)`` (seeded), biases 0, LayerNorm γ=1 / β=0
(``mlm.bias`` is vocabulary-sized and unchanged). New layers are appended on top (slots
``src.n_layers..dst.n_layers-1``); ``new_layer_init="copy"`` (reference default) copies the (widened) old slot
``stacking_map(src.n_layers, dst.n_layers)[j]`` (full repeats of the stack, then the top layers, bert2BERT
order), ``"random"`` initializes them like a fresh layer. Old units always keep their index, so every
mask is ``[1] * old + [c] * (new - old)`` (:class:`MsgMasks`).

**Model-side forward changes** (what the models implement and ``tests/msg_reference.py`` writes out; ``c`` the
current mask value, ``m_e`` / ``m_h`` / ``m_f`` the hidden / head / FFN masks of :class:`MsgMasks`):

1. Every LayerNorm over the hidden dimension (``embed.ln``, ``ln_1``, ``ln_2``, ``mlm.ln``, ``final_ln``)
   becomes :func:`msg_layernorm` with weights ``m_e`` (mask-weighted mean and variance) and its output is
   multiplied by ``m_e``.
2. The embedding output (before dropout) is multiplied by ``m_e`` (needed where no LayerNorm follows:
   GPT, DeiT; harmless for BERT).
3. Attention: each head's output (``softmax(QKᵀ/√d_h) V``, i.e. equivalently V) is multiplied by its
   ``m_h`` entry before ``attn.proj``.
4. MLP: the activation ``gelu(fc_in(x))`` is multiplied by ``m_f`` before ``fc_out``.
5. Depth: a new layer computes ``h <- c * Block(h) + (1 - c) * h`` (old layers ``c = 1``).
6. Dropout stays where the plain model has it (the reference forward has none).

At ``c = 0`` new channels are exactly 0 wherever a matmul reads them, LN statistics see only the old
channels, new heads / units contribute 0 and new layers are the identity, so the grown model computes the
old function (bit-level differences only from summation order: measured ~1e-7 relative). At ``c = 1`` the
masks are all ones and this is the plain grown model. ``c`` ramps linearly (:func:`msg_mask`); once it
reaches 1 the masks are removed (plain model, same state).

**Moments** (``moments=``): ``"copy"`` (default) — old slices of ``exp_avg`` / ``exp_avg_sq`` copied, new
entries and new layers zero. AdamW step counts: new layers start at step 0, like the reference, which adds
them as new parameters with empty optimizer state (their step then advances with every step, also while
``c = 0`` gives them zero gradients and their moments stay 0). A widened tensor keeps its old step for all
its entries (one tensor has one step): its new entries are bias-corrected with the old count, whereas the
reference's separate new parameters would start at 0. ``"reset"`` — no moments, ``adam_step = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from megagrow.growth.ops.depth import split_block_name, stacking_map
from megagrow.models.dims import Dims, check_family
from megagrow.models.masks import GrowthMasks
from megagrow.models.masks import masked_layernorm as msg_layernorm
from megagrow.models.width_axes import width_spec
from megagrow.state import FullState, with_steps

MOMENT_MODES = ("copy", "reset")
NEW_LAYER_INITS = ("copy", "random")
_LN_NAMES = ("ln_1", "ln_2", "embed.ln", "final_ln", "mlm.ln")


def msg_mask(step: int, start: int, ramp_steps: int = 5000) -> float:
    """Linear ramp: 0 at ``step <= start``, 1 from ``start + ramp_steps`` on (``ramp_steps=0``: a step)."""
    if ramp_steps < 0:
        raise ValueError(f"ramp_steps={ramp_steps} must be >= 0")
    if step <= start:
        return 0.0 if ramp_steps > 0 or step < start else 1.0
    if ramp_steps == 0:
        return 1.0
    return min(1.0, (step - start) / ramp_steps)


@dataclass(frozen=True)
class MsgMasks:
    """Old/new sizes of one MSG growth; masks are ``[1] * old + [c] * (new - old)``."""

    hidden: tuple[int, int]
    heads: tuple[int, int]
    ffn: tuple[int, int]
    layers: tuple[int, int]

    @classmethod
    def between(cls, src: Dims, dst: Dims) -> MsgMasks:
        """The sizes of the growth ``src -> dst``."""
        return cls((src.hidden, dst.hidden), (src.n_heads, dst.n_heads), (src.ffn, dst.ffn),
                   (src.n_layers, dst.n_layers))

    @staticmethod
    def _mask(old: int, new: int, c: float, dtype: torch.dtype) -> torch.Tensor:
        m = torch.ones(new, dtype=dtype)
        m[old:] = c
        return m

    def hidden_mask(self, c: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._mask(*self.hidden, c, dtype)

    def head_mask(self, c: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._mask(*self.heads, c, dtype)

    def ffn_mask(self, c: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._mask(*self.ffn, c, dtype)

    def layer_mask(self, c: float) -> list[float]:
        """One factor per slot: 1.0 for old slots, ``c`` for new ones."""
        return [1.0] * self.layers[0] + [float(c)] * (self.layers[1] - self.layers[0])

    def growth_masks(self, c: float) -> GrowthMasks:
        """The masks at value ``c`` in the form the models take (``model(batch, layer_map, masks)``)."""
        return GrowthMasks(self.hidden_mask(c), self.head_mask(c), self.ffn_mask(c), tuple(self.layer_mask(c)))


# ---------------------------------------------------------------------------------------------- operator


def _fresh(name: str, shape: tuple[int, ...], gen: torch.Generator, std: float) -> torch.Tensor:
    last = name.rsplit(".", 1)
    is_ln = any(last[0] == n or last[0].endswith("." + n) for n in _LN_NAMES)
    if name.endswith(".bias") and name != "mlm.bias":
        return torch.zeros(shape)
    if is_ln and name.endswith(".weight"):
        return torch.ones(shape)
    return torch.randn(shape, generator=gen) * std


def _embed(old: torch.Tensor, new: torch.Tensor, fused3: bool) -> torch.Tensor:
    """Copy ``old`` into the leading corner of ``new`` (in place; fused QKV per third)."""
    if fused3:
        o = old.reshape(3, old.shape[0] // 3, *old.shape[1:])
        n = new.view(3, new.shape[0] // 3, *new.shape[1:])
    else:
        o, n = old, new
    n[tuple(slice(0, s) for s in o.shape)] = o
    return new


def _new_shape(t: torch.Tensor, name: str, family: str, sizes: dict[str, int]) -> tuple[tuple[int, ...], bool]:
    spec = width_spec(name, family)
    shape = list(t.shape)
    if spec.fused3:
        shape = [3, shape[0] // 3, *shape[1:]]
    for dim, key, _role in spec.axes:
        shape[dim] = sizes[key]
    if spec.fused3:
        shape = [shape[0] * shape[1], *shape[2:]]
    return tuple(shape), spec.fused3


def msg_grow(state: FullState, family: str, src: Dims, dst: Dims, *, seed: int = 0, init_std: float = 0.02,
             new_layer_init: str = "copy", moments: str = "copy") -> tuple[FullState, MsgMasks]:
    """Grow ``state`` (sizes ``src``) to the sizes ``dst`` (any of them may equal ``src``'s; the head size
    ``hidden / n_heads`` is kept) and return ``(grown state, masks)``. Function preserving under the masked
    forward at ``c = 0``. See the module docstring."""
    check_family(family)
    if moments not in MOMENT_MODES:
        raise ValueError(f"moments={moments!r}: must be one of {', '.join(MOMENT_MODES)}")
    if new_layer_init not in NEW_LAYER_INITS:
        raise ValueError(f"new_layer_init={new_layer_init!r}: must be one of {', '.join(NEW_LAYER_INITS)}")
    if (src.n_heads < 1 or src.hidden % src.n_heads or dst.n_heads < 1
            or dst.hidden != dst.n_heads * (src.hidden // src.n_heads)):
        raise ValueError(f"head size {src.hidden}/{src.n_heads} must be kept: the target has hidden={dst.hidden}, "
                         f"n_heads={dst.n_heads}")
    for what in ("hidden", "n_heads", "ffn", "n_layers"):
        if getattr(dst, what) < getattr(src, what):
            raise ValueError(f"{what}: {getattr(src, what)} -> {getattr(dst, what)} is not growth")
    slots = {p[0] for p in (split_block_name(n) for n in state.params) if p is not None}
    if slots != set(range(src.n_layers)):
        raise ValueError(f"n_layers={src.n_layers} but the state has block slots {sorted(slots)}")
    sizes = {"e": dst.hidden, "a": dst.hidden, "f": dst.ffn}
    gen = torch.Generator().manual_seed(int(seed))
    keep_moments = moments == "copy" and bool(state.exp_avg)

    params: dict[str, torch.Tensor] = {}
    mom: dict[str, dict[str, torch.Tensor]] = {"exp_avg": {}, "exp_avg_sq": {}}
    steps: dict[str, int] = {}
    for name, t in state.params.items():  # width, in input order
        shape, fused3 = _new_shape(t, name, family, sizes)
        params[name] = _embed(t.detach().float(), _fresh(name, shape, gen, init_std), fused3)
        steps[name] = state.step_of(name)
        if keep_moments:
            for m in mom:
                mom[m][name] = _embed(getattr(state, m)[name].detach().float(), torch.zeros(shape), fused3)

    if dst.n_layers > src.n_layers:  # depth: new slots on top
        source = stacking_map(src.n_layers, dst.n_layers, "top")
        suffixes = [p[1] for p in (split_block_name(n) for n in params) if p is not None and p[0] == 0]
        for j in range(src.n_layers, dst.n_layers):
            for s in suffixes:
                ref = params[f"blocks.{source[j]}.{s}"]
                name = f"blocks.{j}.{s}"
                params[name] = (
                    ref.clone() if new_layer_init == "copy" else _fresh(name, tuple(ref.shape), gen, init_std)
                )
                steps[name] = 0  # a new parameter: zero moments and a fresh step count
                if keep_moments:
                    for m in mom:
                        mom[m][name] = torch.zeros_like(ref)
    masks = MsgMasks.between(src, dst)
    if not keep_moments:
        return FullState(params=params), masks
    return with_steps(params, mom["exp_avg"], mom["exp_avg_sq"], steps), masks


__all__ = ["MOMENT_MODES", "MsgMasks", "msg_grow", "msg_layernorm", "msg_mask"]
