"""Multi-Level operators (Zou et al., ICLR 2024): coalescing, de-coalescing and interpolation on a FullState.

Spec: ``docs/methods/multilevel.md``. Pure functions on :class:`FullState`
(stdlib + torch + ``megagrow.state`` only); nothing here builds a model.

**Width** (one coalescing step halves hidden ``d``, the FFN ``f`` and the number of heads ``H``, keeping
the head size). Three groupings (:mod:`.grouping`): ``e`` on the hidden/residual dimension, ``a`` on
the attention dimension (pairs whole heads, shared by Q, K, V and the input of ``attn.proj``) and ``f``
on the FFN dimension. ``pairing="half"`` (default, the paper's ``[I | I]``) pairs unit ``i`` with
``i + n/2`` (head ``j`` with ``j + H/2``); ``"adjacent"`` pairs ``2i`` with ``2i + 1`` (heads ``2j``,
``2j + 1``). Coalescing averages outputs (``A``) and sums inputs (``S``): ``W' = A_out W S_inᵀ``,
``b' = A_out b``. De-coalescing is the normalized transpose, ``W = S_outᵀ W' A_in`` (duplicate
outputs, split inputs in halves), an exact right-inverse.

==========================================  ===========  =========  ==========================
parameter                                   out side     in side    note
==========================================  ===========  =========  ==========================
``blocks.k.attn.qkv`` (each Q/K/V third)    ``a``        ``e``      fused [3d, d] split in thirds
``blocks.k.attn.proj``                      ``e``        ``a``
``blocks.k.mlp.fc_in``                      ``f``        ``e``
``blocks.k.mlp.fc_out``                     ``e``        ``f``
``ln_1``, ``ln_2``, ``embed.ln``,           ``e``                   gamma, beta averaged / copied
``final_ln``, ``mlm.ln``
``mlm.dense``                               ``e``        ``e``
``embed.tokens/positions/token_types``      ``e`` (cols)            bert/gpt: x2 / x0.5 (tied output)
``patch_embed.proj`` [d, C, p, p]           ``e``                   deit
``cls_token``, ``dist_token``, ``pos_embed``  ``e`` (last)          deit, no scaling
``head``, ``head_dist``                                  ``e``      deit; bias copied
``mlm.bias``                                                        copied
==========================================  ===========  =========  ==========================

Biases follow their weight's output side. The x2 on the bert/gpt embedding tables keeps the tied output
layer exact (coarse table = sum of the paired columns while the coarse hidden state is their average).
For post-LN BERT this is function preserving up to the LayerNorm epsilon (the embedding LayerNorm sees
a half-size input after de-coalescing; exact with the BERT presets' ``ln_eps=1e-12``); DeiT de-coalescing
is function preserving. For pre-LN GPT it is *not* (the reference behaviour, open question Q4: the
residual stream is halved while sub-layer outputs are not). ``gpt_residual_scale=True`` (our option, not
the paper's) also scales the residual-writing projections ``attn.proj`` and ``mlp.fc_out`` (weight and
bias) by x2 when coalescing and x0.5 when de-coalescing, which halves the whole residual stream and makes
GPT de-coalescing function preserving up to the LayerNorm epsilon, keeping the embedding tied.

**Depth**: coarse layer ``i`` is the mean of its group of fine layers (every block parameter); non-block
parameters pass through. ``pairing="adjacent"`` (default, paper): groups ``(2i, 2i+1)``, so de-coalescing
gives ``[l0, l0, l1, l1, ...]``; ``"half"`` (released ``L6-H6.json``): groups ``(i, i + L/2)``,
de-coalescing gives ``[l0 .. l_{L/2-1}, l0 .. l_{L/2-1}]``. Depth de-coalescing is *not* function
preserving as such: the fine model equals the coarse model run with the layer map
:func:`depth_layer_map` (each coarse slot executed once per fine layer of its group).

**Optimizer state** (``moments=``):

- ``"reset"`` (default; the reference code starts every level with a fresh AdamW): the result has empty
  ``exp_avg`` / ``exp_avg_sq`` and ``adam_step = 0``.
- ``"map"``: the moments and AdamW step counts are carried over (a parameter keeps its step; a coarse
  layer averaged from a group of fine layers takes the largest step of the group, see
  :func:`~megagrow.state.source_step` — equal in practice, the group was live together; a de-coalesced
  layer takes its coarse source's). Width: ``exp_avg`` maps like a
  gradient, i.e. by the transpose of the opposite parameter map (with ``θ_fine = D θ_coarse`` the coarse
  gradient is ``Dᵀ g``). Coalescing moments therefore *sum* output units and *average* input units
  (and divide the embedding tables by 2); de-coalescing moments split outputs in halves and duplicate
  inputs (embeddings x2). For a de-coalesced BERT this is exactly the coarse model's gradient, and Adam's
  elementwise update ``m / sqrt(v)`` is consistent. ``exp_avg_sq`` maps ``sqrt(v)`` the same way and
  squares the result (non-negative, the second moment of a mapped gradient whose paired entries are
  equal). Depth: ``exp_avg`` like the parameters (mean over the group / copy) and ``sqrt(exp_avg_sq)``
  likewise, squared. Round trips of mapped moments: ``exp_avg`` exact, ``exp_avg_sq`` to ~1 ulp (sqrt).

Exactness: ``coalesce(decoalesce(θ)) == θ`` bit-for-bit (``torch.equal``) for parameters and ``exp_avg``
(groups of two: every step is ``x + x``, ``/2``, ``x/2 + x/2`` or ``x2``, exact in binary floating point
barring subnormals and overflow).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from megagrow.growth.ops.grouping import TRANSPOSE, Grouping, apply_axis, pair_grouping
from megagrow.models.dims import Dims, check_family
from megagrow.models.width_axes import RESIDUAL_WRITERS, WidthSpec, width_spec
from megagrow.state import FullState, source_step, with_steps

MOMENT_MODES = ("reset", "map")
DEPTH_PAIRINGS = ("adjacent", "half")

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


# ----------------------------------------------------------------------------------------------- width


def _check_common(family: str, moments: str) -> None:
    check_family(family)
    if moments not in MOMENT_MODES:
        raise ValueError(f"moments={moments!r}: must be one of {', '.join(MOMENT_MODES)}")


def _fine_groupings(hidden: int, n_heads: int, ffn: int, pairing: str) -> dict[str, Grouping]:
    """Groupings on the fine sizes (hidden, heads, ffn)."""
    if n_heads < 1 or hidden % n_heads:
        raise ValueError(f"hidden={hidden} is not divisible by n_heads={n_heads}")
    return {
        "e": pair_grouping(hidden, pairing, "the hidden dimension"),
        "a": pair_grouping(n_heads, pairing, "the attention heads").expand(hidden // n_heads),
        "f": pair_grouping(ffn, pairing, "the FFN dimension"),
    }


def _check_width_shapes(state: FullState, family: str, hidden: int, ffn: int, where: str) -> None:
    """The block shapes must match the sizes the caller named (a clear error instead of a bad map)."""
    expect = {"attn.qkv.weight": (3 * hidden, hidden), "mlp.fc_in.weight": (ffn, hidden)}
    for name, t in state.params.items():
        m = _BLOCK.match(name)
        if m is not None and m.group(2) in expect and tuple(t.shape) != expect[m.group(2)]:
            raise ValueError(
                f"{where}: {name} has shape {tuple(t.shape)}, expected {expect[m.group(2)]} "
                f"for hidden={hidden}, ffn={ffn} ({family})"
            )


def _map_width_tensor(
    x: torch.Tensor, spec: WidthSpec, groupings: dict[str, Grouping], hows: dict[str, str], scale: float
) -> torch.Tensor:
    """Apply the axis maps (``hows`` = map for the "out" and "in" roles) then multiply by ``scale``."""
    y = x.reshape(3, x.shape[0] // 3, *x.shape[1:]) if spec.fused3 else x
    for dim, key, role in spec.axes:
        y = apply_axis(y, dim, groupings[key], hows[role])
    if spec.fused3:
        y = y.reshape(-1, *y.shape[2:])
    if scale != 1.0:
        y = y * scale
    return y if y is not x else x.clone()


# Parameter / moment maps per direction: (out-role map, in-role map, exponent of the spec's scale).
_PARAM_COALESCE = ({"out": "avg", "in": "sum"}, 1)
_PARAM_DECOALESCE = ({"out": "dup", "in": "split"}, -1)
# Moments map like gradients: the transpose of the *opposite* parameter map.
_MOMENT_COALESCE = ({r: TRANSPOSE[h] for r, h in _PARAM_DECOALESCE[0].items()}, -1)
_MOMENT_DECOALESCE = ({r: TRANSPOSE[h] for r, h in _PARAM_COALESCE[0].items()}, 1)


def _width(
    state: FullState,
    family: str,
    groupings: dict[str, Grouping],
    coalescing: bool,
    moments: str,
    gpt_residual_scale: bool,
) -> FullState:
    (p_hows, p_exp), (m_hows, m_exp) = (
        (_PARAM_COALESCE, _MOMENT_COALESCE) if coalescing else (_PARAM_DECOALESCE, _MOMENT_DECOALESCE)
    )
    specs = {n: width_spec(n, family, gpt_residual_scale) for n in state.params}
    params = {n: _map_width_tensor(t, specs[n], groupings, p_hows, specs[n].scale**p_exp)
              for n, t in state.params.items()}
    if moments == "reset":
        return FullState(params=params)

    def spec_of(n: str) -> WidthSpec:
        return specs[n] if n in specs else width_spec(n, family, gpt_residual_scale)

    exp_avg = {n: _map_width_tensor(t, spec_of(n), groupings, m_hows, spec_of(n).scale**m_exp)
               for n, t in state.exp_avg.items()}
    exp_avg_sq = {n: _map_width_tensor(t.sqrt(), spec_of(n), groupings, m_hows, spec_of(n).scale**m_exp).square()
                  for n, t in state.exp_avg_sq.items()}
    return with_steps(params, exp_avg, exp_avg_sq, state.steps())  # width maps keep every name


def coalesce_width(state: FullState, family: str, dims: Dims, *, pairing: str = "half", moments: str = "reset",
                   gpt_residual_scale: bool = False) -> FullState:
    """Width coalescing of a fine state with ``dims`` (the *input's* sizes; ``n_layers`` is not read) into one
    with ``hidden/2``, ``n_heads/2`` heads of the same size and ``ffn/2``. See the module docstring."""
    _check_common(family, moments)
    _check_gpt_option(family, gpt_residual_scale)
    _check_width_shapes(state, family, dims.hidden, dims.ffn, "coalesce_width")
    groupings = _fine_groupings(dims.hidden, dims.n_heads, dims.ffn, pairing)
    return _width(state, family, groupings, True, moments, gpt_residual_scale)


def decoalesce_width(state: FullState, family: str, dims: Dims, *, pairing: str = "half", moments: str = "reset",
                     gpt_residual_scale: bool = False) -> FullState:
    """Width de-coalescing of a coarse state with ``dims`` (the *input's* sizes; ``n_layers`` is not read) into
    one with ``2*hidden``, ``2*n_heads`` heads of the same size and ``2*ffn``: the exact right-inverse of
    :func:`coalesce_width` with the same ``pairing`` / ``gpt_residual_scale``."""
    _check_common(family, moments)
    _check_gpt_option(family, gpt_residual_scale)
    _check_width_shapes(state, family, dims.hidden, dims.ffn, "decoalesce_width")
    if dims.n_heads < 1 or dims.hidden % dims.n_heads:
        raise ValueError(f"hidden={dims.hidden} is not divisible by n_heads={dims.n_heads}")
    groupings = _fine_groupings(2 * dims.hidden, 2 * dims.n_heads, 2 * dims.ffn, pairing)
    return _width(state, family, groupings, False, moments, gpt_residual_scale)


def _check_gpt_option(family: str, gpt_residual_scale: bool) -> None:
    if gpt_residual_scale and family != "gpt":
        raise ValueError(f"gpt_residual_scale applies to family 'gpt' only, got {family!r}")


# ----------------------------------------------------------------------------------------------- depth


def depth_grouping(n_layers: int, pairing: str = "adjacent") -> Grouping:
    """Fine layer ``j`` -> coarse layer: ``"adjacent"`` ``j // 2``; ``"half"`` ``j mod L/2``."""
    if pairing not in DEPTH_PAIRINGS:
        raise ValueError(f"depth pairing={pairing!r}: must be one of {', '.join(DEPTH_PAIRINGS)}")
    return pair_grouping(n_layers, "half" if pairing == "half" else "adjacent", "the layer stack")


def depth_layer_map(n_layers_coarse: int, pairing: str = "adjacent") -> list[int]:
    """The layer map on the *coarse* slots that computes what the depth-de-coalesced fine model computes:
    adjacent ``[0, 0, 1, 1, ...]``, half ``[0, 1, ..., L'-1, 0, 1, ..., L'-1]``."""
    return list(depth_grouping(2 * n_layers_coarse, pairing).group_of)


def _split_blocks(names: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    blocks: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in names.items():
        m = _BLOCK.match(name)
        if m is not None:
            blocks.setdefault(int(m.group(1)), {})[m.group(2)] = t
    return blocks


def _check_blocks(state: FullState, n_layers: int, where: str) -> None:
    slots = sorted(_split_blocks(state.params))
    if slots != list(range(n_layers)):
        raise ValueError(f"{where}: expected blocks 0..{n_layers - 1}, the state has {slots[:3]}..{slots[-3:]}"
                         f" ({len(slots)} blocks)")


def _depth_coalesce_dict(
    d: dict[str, torch.Tensor], grouping: Grouping, transform: Callable[[torch.Tensor], torch.Tensor],
    inverse: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    blocks = _split_blocks(d)
    members: list[list[int]] = [[] for _ in range(grouping.n_groups)]
    for j, g in enumerate(grouping.group_of):
        members[g].append(j)
    for name, t in d.items():
        if _BLOCK.match(name) is None:
            out[name] = t.clone()
    suffixes = sorted({s for b in blocks.values() for s in b})
    for i, group in enumerate(members):
        for s in suffixes:
            present = [blocks[j][s] for j in group if s in blocks.get(j, {})]
            if not present:
                continue
            if len(present) != len(group):
                raise ValueError(f"blocks {group} do not all have {s!r}")
            total = transform(present[0])
            for t in present[1:]:
                total = total + transform(t)
            out[f"blocks.{i}.{s}"] = inverse(total / len(group))
    return out


def _depth_decoalesce_dict(d: dict[str, torch.Tensor], grouping: Grouping) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    blocks = _split_blocks(d)
    for name, t in d.items():
        if _BLOCK.match(name) is None:
            out[name] = t.clone()
    for j, g in enumerate(grouping.group_of):
        for s, t in blocks.get(g, {}).items():
            out[f"blocks.{j}.{s}"] = t.clone()
    return out


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _depth_steps(state: FullState, grouping: Grouping, coalescing: bool) -> dict[str, int]:
    """AdamW step counts after depth (de-)coalescing: non-block parameters keep theirs; a coarse block
    parameter takes the largest step of its group (:func:`~megagrow.state.source_step`), a fine one its
    coarse source's."""
    blocks, every = _split_blocks(state.params), state.steps()
    steps = {n: every[n] for n in state.params if _BLOCK.match(n) is None}
    if coalescing:
        members: list[list[int]] = [[] for _ in range(grouping.n_groups)]
        for j, g in enumerate(grouping.group_of):
            members[g].append(j)
        for i, group in enumerate(members):
            for s in sorted({s for j in group for s in blocks.get(j, {})}):
                srcs = [f"blocks.{j}.{s}" for j in group if s in blocks.get(j, {})]
                steps[f"blocks.{i}.{s}"] = source_step(every, srcs)
    else:
        for j, g in enumerate(grouping.group_of):
            for s in blocks.get(g, {}):
                steps[f"blocks.{j}.{s}"] = every[f"blocks.{g}.{s}"]
    return steps


def coalesce_depth(
    state: FullState, n_layers: int, pairing: str = "adjacent", moments: str = "reset"
) -> FullState:
    """``n_layers`` blocks -> ``n_layers/2``: coarse block ``i`` = mean of its group (every block
    parameter); non-block parameters are copied. See the module docstring for ``pairing``/``moments``."""
    if moments not in MOMENT_MODES:
        raise ValueError(f"moments={moments!r}: must be one of {', '.join(MOMENT_MODES)}")
    _check_blocks(state, n_layers, "coalesce_depth")
    grouping = depth_grouping(n_layers, pairing)
    params = _depth_coalesce_dict(state.params, grouping, _identity, _identity)
    if moments == "reset":
        return FullState(params=params)
    return with_steps(
        params,
        _depth_coalesce_dict(state.exp_avg, grouping, _identity, _identity),
        _depth_coalesce_dict(state.exp_avg_sq, grouping, torch.sqrt, torch.square),
        _depth_steps(state, grouping, coalescing=True),
    )


DEPTH_DECOALESCE = ("copy", "zero")
#: the projections that write a block's sub-layer outputs into the residual stream


def decoalesce_depth(
    state: FullState, n_layers_coarse: int, pairing: str = "adjacent", moments: str = "reset", new: str = "copy"
) -> FullState:
    """``n_layers_coarse`` blocks -> ``2 * n_layers_coarse``: fine block ``j`` is a copy of coarse block
    ``group(j)`` (adjacent ``[l0, l0, l1, l1, ...]``, half ``[l0 .. l_{L'-1}, l0 .. l_{L'-1}]``).

    ``new="zero"`` (our option, not the paper's): the second fine block of each group keeps the copy's weights but
    its residual-writing projections (``attn.proj``, ``mlp.fc_out``) are zeroed, so in a pre-LN model it is the
    identity and the fine model computes exactly the coarse model (with ``"copy"`` every layer runs twice). The
    round trip through :func:`coalesce_depth` is then no longer the identity (those projections average to half)."""
    if moments not in MOMENT_MODES:
        raise ValueError(f"moments={moments!r}: must be one of {', '.join(MOMENT_MODES)}")
    if new not in DEPTH_DECOALESCE:
        raise ValueError(f"new={new!r}: must be one of {', '.join(DEPTH_DECOALESCE)}")
    _check_blocks(state, n_layers_coarse, "decoalesce_depth")
    grouping = depth_grouping(2 * n_layers_coarse, pairing)
    params = _depth_decoalesce_dict(state.params, grouping)
    if new == "zero":
        first = {g: grouping.group_of.index(g) for g in set(grouping.group_of)}
        for j, g in enumerate(grouping.group_of):
            if j != first[g]:
                for s in RESIDUAL_WRITERS:
                    name = f"blocks.{j}.{s}"
                    if name not in params:
                        raise ValueError(f"decoalesce_depth(new='zero'): the state has no {name}")
                    params[name] = torch.zeros_like(params[name])
    if moments == "reset":
        return FullState(params=params)
    return with_steps(
        params,
        _depth_decoalesce_dict(state.exp_avg, grouping),
        _depth_decoalesce_dict(state.exp_avg_sq, grouping),
        _depth_steps(state, grouping, coalescing=False),
    )


# ------------------------------------------------------------------------------------------- combined


def coalesce(state: FullState, family: str, dims: Dims, *, width_pairing: str = "half",
             depth_pairing: str = "adjacent", moments: str = "reset", gpt_residual_scale: bool = False) -> FullState:
    """One full coalescing step (width, then depth) of a fine state with sizes ``dims`` (the input's)."""
    narrow = coalesce_width(state, family, dims, pairing=width_pairing, moments=moments,
                            gpt_residual_scale=gpt_residual_scale)
    return coalesce_depth(narrow, dims.n_layers, depth_pairing, moments)


def decoalesce(state: FullState, family: str, dims: Dims, *, width_pairing: str = "half",
               depth_pairing: str = "adjacent", moments: str = "reset", gpt_residual_scale: bool = False,
               depth_new: str = "copy") -> FullState:
    """One full de-coalescing step (depth, then width) of a coarse state with sizes ``dims`` (the input's),
    the exact right-inverse of :func:`coalesce` with the same options (``depth_new="copy"``, the default; see
    :func:`decoalesce_depth` for ``"zero"``)."""
    deep = decoalesce_depth(state, dims.n_layers, depth_pairing, moments, depth_new)
    return decoalesce_width(deep, family, dims, pairing=width_pairing, moments=moments,
                            gpt_residual_scale=gpt_residual_scale)


# -------------------------------------------------------------------------------------- interpolation


def interpolate(decoalesced: FullState, before: FullState, alpha: float) -> FullState:
    """``θ = (1 − α)·θ_decoalesced + α·θ_before`` on every parameter (docs/methods/multilevel.md).

    ``α = 0`` returns the de-coalesced parameters exactly and ``α = 1`` ``before``'s exactly (copies).
    Optimizer state (``exp_avg``, ``exp_avg_sq`` and the step counts ``adam_step``/``param_steps``) is taken
    from ``decoalesced`` unchanged (empty after the default ``moments="reset"``); ``before``'s moments and
    steps are ignored: the moments (and so the bias correction that goes with them) are ``decoalesced``'s.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}: must be in [0, 1]")
    if set(decoalesced.params) != set(before.params):
        diff = sorted(set(decoalesced.params) ^ set(before.params))
        raise ValueError(f"interpolate: the two states have different parameters: {diff[:5]}")
    params: dict[str, torch.Tensor] = {}
    for name, dec in decoalesced.params.items():
        old = before.params[name]
        if dec.shape != old.shape:
            raise ValueError(f"interpolate: {name} has shape {tuple(dec.shape)} vs {tuple(old.shape)}")
        if alpha == 0.0:
            params[name] = dec.clone()
        elif alpha == 1.0:
            params[name] = old.to(dec.dtype, copy=True)
        else:
            params[name] = (1.0 - alpha) * dec + alpha * old.to(dec.dtype)
    return FullState(
        params=params,
        exp_avg={n: t.clone() for n, t in decoalesced.exp_avg.items()},
        exp_avg_sq={n: t.clone() for n, t in decoalesced.exp_avg_sq.items()},
        adam_step=decoalesced.adam_step,
        param_steps=dict(decoalesced.param_steps),
    )
