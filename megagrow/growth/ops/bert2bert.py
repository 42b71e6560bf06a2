"""bert2BERT width growth (FPI / AKI, head-wise) and its composition with depth stacking.

Spec: ``docs/methods/bert2bert.md``. Pure functions on
:class:`~megagrow.state.FullState` (stdlib + torch + ``megagrow.state`` + sibling ops modules only).

**Index maps.** Three kinds of width map, each a :class:`~.grouping.Grouping` from *new* unit to *old* unit
(old units keep their index, ``g(i) = i`` for ``i < n_old``; copy counts ``C_x = |{i : g(i) = x}|``):

- ``e`` on the hidden/residual dimension — one map for the whole model (embeddings, every block, heads);
- ``a`` on the attention dimension — drawn on *heads* (a new head copies a whole old head, head size
  ``hidden / n_heads`` is kept: ``src``'s must equal ``dst``'s), shared by Q, K, V and the input
  of ``attn.proj``; one independent draw per layer;
- ``f`` on the FFN dimension — one independent draw per layer (``fc_in`` out = ``fc_out`` in).

``sampling="balanced"`` (default, our choice for Q9): the new units are consecutive random permutations of
the old units (each old unit copied ⌊n_extra/n_old⌋ or one more times), so with ``new = k * old`` every
unit has the same copy count. ``sampling="uniform"``: ``g(i) ~ Uniform{0..n_old-1}`` i.i.d. (the notes'
literal formula). Both are seeded by ``seed`` (``torch.Generator``); draw order: ``e``, then per layer
``a``, ``f``.

**FPI** (our ``out × in`` layout; the notes' formulas are transposed): every linear map's *in* dimension is
split (``W[:, i] = W_old[:, g(i)] / C_{g(i)}``), its *out* dimension duplicated (``W[j, :] = Ũ[g(j), :]``);
biases follow the out side. Roles (the table of :mod:`.multilevel`): ``qkv`` out ``a`` / in ``e``;
``proj`` out ``e`` / in ``a``; ``fc_in`` out ``f`` / in ``e``; ``fc_out`` out ``e`` / in ``f``;
``mlm.dense`` ``e`` / ``e``; embeddings (token, position, type, DeiT patch/cls/dist/pos) out-copy only; every
LayerNorm γ, β copied by ``e`` without rescaling (notes); DeiT ``head``/``head_dist`` in ``e`` (split).

*Tied output* (our choice; the notes are silent): the decoder of BERT's MLM head and GPT's LM head is
``embed.tokens.weight``, which must be *copied* on the input side but would need a *split* as a decoder.
We therefore split the LayerNorm right before the tied decoder instead (``mlm.ln`` for BERT, ``final_ln``
for GPT: ``γ[i] = γ_old[g(i)] / C``, same for β) — that LayerNorm feeds only the decoder, so the logits are
unchanged. The tied weight stays a single entry (``embed.tokens.weight``).

*Preservation*: all linear maps are exact in real arithmetic. A LayerNorm over a copied hidden vector sees
the statistics of the old vector weighted by the copy counts, so it is exact iff all hidden copy counts are
equal, i.e. ``sampling="balanced"`` and ``dst.hidden`` a multiple of ``src.hidden``: then BERT (post-LN, incl.
the embedding LN) and GPT (pre-LN) are preserved up to float rounding and the LN epsilon (measured in
``tests/test_bert2bert_msg_ops.py`` with 16 → 32: ~1e-6 relative on the logits for both). With unequal
copy counts (``uniform``, or e.g. 512 → 768) the LNs change the function slightly (docs/methods/bert2bert.md).

**AKI** (advanced knowledge initialization): the identical in-dimension step, but the *new* output units
of every block parameter of layer ``l`` come from the next layer ``l+1``:
``W^l[j, :] = Ũ^{l+1}[g^{l+1}(j), :]`` for new ``j`` (``Ũ^{l+1}`` = layer ``l+1``'s in-expanded weight,
with its own in-maps, and ``g^{l+1}`` its own out-map, as in the notes' formula); old output units keep
``Ũ^l``. Biases and the block LayerNorms' new entries likewise come from layer ``l+1``. The top layer uses
itself (the notes' default; it is then FPI). Non-block parameters (embeddings, ``embed.ln``, ``mlm.*``,
``final_ln``, DeiT heads) are expanded as in FPI. AKI is not function preserving (measured in the tests).
The layer index ``l`` is the block slot index (``blocks.{l}``), i.e. the identity layer map.

**Moments** (``moments=``): ``"copy"`` (default) — ``exp_avg`` maps exactly like its parameter (copy on
duplicated outputs, ``/C`` on split inputs, AKI rows from the same source layer) and ``exp_avg_sq`` is
copied on both sides (no ``/C``), so Adam's next update ``m / (sqrt(v) + eps)`` of every wide entry is
exactly the small model's update mapped by the parameter map (copied on outputs, ``/C`` on split inputs);
every parameter keeps its AdamW step count (an AKI tensor whose new rows come from layer ``l+1`` keeps
layer ``l``'s: one tensor has one step, and the block layers were live together, so the steps agree; the
stacked copies take their source layer's). ``"reset"`` — a fresh optimizer: no moments, ``adam_step = 0``.

**Depth** (bert2BERT stacks *after* widening): :func:`bert2bert` = :func:`fpi_width` / :func:`aki_width`
then :func:`~.stacking.stack_depth` with ``tail="top"`` (⌊L_t/L_s⌋ copies of the stack, the remainder from
the top layers; moments ``copy`` or, after a reset, none). Stacking is not function preserving.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from megagrow.growth.ops.depth import split_block_name
from megagrow.growth.ops.grouping import Grouping, apply_axis
from megagrow.growth.ops.stacking import stack_depth
from megagrow.models.dims import Dims, check_family
from megagrow.models.width_axes import WidthSpec, width_spec
from megagrow.state import FullState, with_steps

SAMPLINGS = ("balanced", "uniform")
MOMENT_MODES = ("copy", "reset")
METHODS = ("fpi", "aki")

# The LayerNorm in front of the tied decoder: split (in-role) instead of copied.
_TIED_LN = {"bert": ("mlm.ln.weight", "mlm.ln.bias"), "gpt": ("final_ln.weight", "final_ln.bias")}


def unit_map(n_old: int, n_new: int, generator: torch.Generator, sampling: str = "balanced") -> Grouping:
    """New unit -> old unit: identity on ``0..n_old-1``, then ``n_new - n_old`` sampled old units."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling={sampling!r}: must be one of {', '.join(SAMPLINGS)}")
    if n_old < 1 or n_new < n_old:
        raise ValueError(f"cannot widen {n_old} units to {n_new}: need 1 <= old <= new")
    extra = n_new - n_old
    if sampling == "uniform":
        new = torch.randint(0, n_old, (extra,), generator=generator).tolist()
    else:
        reps = -(-extra // n_old) if extra else 0
        new = (
            torch.cat([torch.randperm(n_old, generator=generator) for _ in range(reps)]).tolist()[:extra]
            if reps
            else []
        )
    return Grouping(tuple(range(n_old)) + tuple(int(x) for x in new), n_old)


def width_maps(
    src: Dims, dst: Dims, seed: int, sampling: str = "balanced"
) -> tuple[Grouping, list[Grouping], list[Grouping]]:
    """``(e, [a per layer], [f per layer])`` for the ``src.n_layers`` layers widened from ``src`` to ``dst``
    (``dst.n_layers`` is not read), in the draw order of the module docstring; ``a`` is on channels (the head
    map expanded by the head size)."""
    _check_sizes(src, dst)
    gen = torch.Generator().manual_seed(int(seed))
    e = unit_map(src.hidden, dst.hidden, gen, sampling)
    heads, ffns = [], []
    for _ in range(src.n_layers):
        heads.append(unit_map(src.n_heads, dst.n_heads, gen, sampling).expand(src.hidden // src.n_heads))
        ffns.append(unit_map(src.ffn, dst.ffn, gen, sampling))
    return e, heads, ffns


def _check_sizes(src: Dims, dst: Dims) -> None:
    if src.n_heads < 1 or src.hidden % src.n_heads:
        raise ValueError(f"hidden={src.hidden} is not divisible by n_heads={src.n_heads}")
    head = src.hidden // src.n_heads
    if dst.n_heads < 1 or dst.hidden % dst.n_heads or dst.hidden // dst.n_heads != head:
        raise ValueError(
            f"head-wise growth keeps the head size {head}: the target's hidden={dst.hidden} must equal "
            f"n_heads={dst.n_heads} x {head}"
        )
    for old, new, what in ((src.hidden, dst.hidden, "hidden"), (src.n_heads, dst.n_heads, "n_heads"),
                           (src.ffn, dst.ffn, "ffn")):
        if new < old:
            raise ValueError(f"{what}: {old} -> {new} is not growth")


def _spec(name: str, family: str) -> WidthSpec:
    if name in _TIED_LN.get(family, ()):
        return WidthSpec(((0, "e", "in"),))
    return width_spec(name, family)  # its ``scale`` (Multi-Level's x2 on embeddings) is not used


def _n_layers(state: FullState) -> int:
    slots = {p[0] for p in (split_block_name(n) for n in state.params) if p is not None}
    if slots != set(range(len(slots))):
        raise ValueError(f"block slots must be 0..K-1, got {sorted(slots)}")
    return len(slots)


def _expand(
    tensors: dict[str, torch.Tensor],
    name: str,
    spec: WidthSpec,
    maps_of,
    family: str,
    method: str,
    n_layers: int,
    hows: dict[str, str],
) -> torch.Tensor:
    """In-axes then out-axes of ``spec``; with AKI the new out units of block ``l`` come from block
    ``l+1`` (top: itself). ``maps_of(layer)`` -> the groupings dict of a layer (None = non-block)."""
    parsed = split_block_name(name)
    layer = parsed[0] if parsed is not None else None

    def in_step(x: torch.Tensor, groupings: dict[str, Grouping]) -> torch.Tensor:
        y = x.reshape(3, x.shape[0] // 3, *x.shape[1:]) if spec.fused3 else x
        for dim, key, role in spec.axes:
            if role == "in":
                y = apply_axis(y, dim, groupings[key], hows["in"])
        return y

    def out_step(y: torch.Tensor, groupings: dict[str, Grouping]) -> torch.Tensor:
        for dim, key, role in spec.axes:
            if role == "out":
                y = apply_axis(y, dim, groupings[key], hows["out"])
        return y

    own = maps_of(layer)
    y = out_step(in_step(tensors[name], own), own)
    outs = [(dim, key) for dim, key, role in spec.axes if role == "out"]
    if method == "aki" and layer is not None and outs and layer + 1 < n_layers:
        src_name = f"blocks.{layer + 1}.{parsed[1]}"
        nxt = maps_of(layer + 1)
        z = out_step(in_step(tensors[src_name], nxt), nxt)
        # Entries new along any out axis come from the next layer.
        new = torch.zeros(y.shape, dtype=torch.bool)
        for dim, key in outs:
            n_old = own[key].n_groups
            idx = [slice(None)] * y.dim()
            idx[dim] = slice(n_old, None)
            new[tuple(idx)] = True
        y = torch.where(new, z, y)
    if spec.fused3:
        y = y.reshape(-1, *y.shape[2:])
    return y.clone() if y is tensors[name] else y


def _grow_width(
    state: FullState, family: str, method: str, src: Dims, dst: Dims, seed: int, moments: str, sampling: str
) -> FullState:
    """Width growth ``src -> dst`` (the ``n_layers`` are not read: the state's block slots are widened)."""
    check_family(family)
    if moments not in MOMENT_MODES:
        raise ValueError(f"moments={moments!r}: must be one of {', '.join(MOMENT_MODES)}")
    n_layers = _n_layers(state)
    for name, t in state.params.items():
        parsed = split_block_name(name)
        if parsed is not None and parsed[1] == "mlp.fc_in.weight" and tuple(t.shape) != (src.ffn, src.hidden):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {(src.ffn, src.hidden)}")
        if parsed is not None and parsed[1] == "attn.qkv.weight" and tuple(t.shape) != (3 * src.hidden, src.hidden):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {(3 * src.hidden, src.hidden)}")
    e, heads, ffns = width_maps(replace(src, n_layers=n_layers), dst, seed, sampling)

    def maps_of(layer: int | None) -> dict[str, Grouping]:
        if layer is None:
            return {"e": e}
        return {"e": e, "a": heads[layer], "f": ffns[layer]}

    specs = {n: _spec(n, family) for n in state.params}
    p_hows = {"out": "dup", "in": "split"}
    params = {n: _expand(state.params, n, specs[n], maps_of, family, method, n_layers, p_hows) for n in state.params}
    if moments == "reset" or not state.exp_avg:
        return FullState(params=params)
    exp_avg = {n: _expand(state.exp_avg, n, specs[n], maps_of, family, method, n_layers, p_hows) for n in state.exp_avg}
    exp_avg_sq = {
        n: _expand(state.exp_avg_sq, n, specs[n], maps_of, family, method, n_layers, {"out": "dup", "in": "dup"})
        for n in state.exp_avg_sq
    }
    return with_steps(params, exp_avg, exp_avg_sq, state.steps())  # width keeps every name and its step


def fpi_width(state: FullState, family: str, src: Dims, dst: Dims, *, seed: int = 0, moments: str = "copy",
              sampling: str = "balanced") -> FullState:
    """bert2BERT function-preserving initialization: widen ``src`` (the input's sizes) to ``dst`` (hidden, heads
    and FFN; head size kept; the ``n_layers`` are not read). See the module docstring."""
    return _grow_width(state, family, "fpi", src, dst, seed, moments, sampling)


def aki_width(state: FullState, family: str, src: Dims, dst: Dims, *, seed: int = 0, moments: str = "copy",
              sampling: str = "balanced") -> FullState:
    """bert2BERT advanced knowledge initialization: as :func:`fpi_width`, but new output units of block
    ``l`` come from block ``l+1`` (the top block from itself). Not function preserving."""
    return _grow_width(state, family, "aki", src, dst, seed, moments, sampling)


def bert2bert(state: FullState, family: str, src: Dims, dst: Dims, *, method: str = "aki", seed: int = 0,
              moments: str = "copy", sampling: str = "balanced") -> FullState:
    """Width (``method`` ``"fpi"`` or ``"aki"``) ``src -> dst`` then depth stacking ``src.n_layers ->
    dst.n_layers`` (``stack_depth(tail="top")``). ``moments="reset"`` gives a fresh optimizer (no moments,
    step 0)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: must be one of {', '.join(METHODS)}")
    if _n_layers(state) != src.n_layers:
        raise ValueError(f"n_layers={src.n_layers} but the state has {_n_layers(state)} block slots")
    wide = _grow_width(state, family, method, src, dst, seed, moments, sampling)
    return stack_depth(wide, src.n_layers, dst.n_layers, moments="copy", tail="top")


__all__ = ["METHODS", "SAMPLINGS", "aki_width", "bert2bert", "fpi_width", "unit_map", "width_maps"]
