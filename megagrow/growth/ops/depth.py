"""Depth maps (which weight slot runs at each layer position) and depth expansion of a ``FullState``.

Depth maps (docs/methods/apollo.md; N live slots, depth d, 1 <= N <= d):

- ``interpolation_map(N, d)``: phi(i) = floor(i*N/d), integer arithmetic (the Apollo release computes
  int(i / (d/N)) in floating point, which differs for a few pairs such as (14, 18)). Each slot serves a
  contiguous run of ~d/N positions: N=3, d=7 -> [0,0,0,1,1,2,2]; N=6, d=12 -> [0,0,1,1,...,5,5].
- ``stacking_map(N, d)``: the block 0..N-1 repeated floor(d/N) times; a remainder r = d mod N uses the
  *top* r slots N-r..N-1 (Apollo release, bert2BERT): N=3, d=7 -> [0,1,2,0,1,2,2];
  N=3, d=8 -> [0,1,2,0,1,2,1,2]; N=6, d=9 -> [0,1,2,3,4,5,3,4,5]. ``tail="mod"`` gives plain i mod N
  instead (the other reading of Apollo's Eq. 11, notes Q8); both agree when N divides d.

Stage expansion (:func:`expand_depth`, docs/methods/apollo.md): the new state's block slot j is a copy of old slot
psi(j), psi = the depth map with (N = n_old, d = n_new). Interpolation: 1->3 [0,0,0], 3->6
[0,0,1,1,2,2], 6->12 [0,0,1,1,...,5,5]. Stacking (StackBERT / G_stack, see :mod:`.stacking`): 3->6
[0,1,2,0,1,2].

Only stdlib, numpy, torch and ``megagrow.state`` may be imported here.
"""

from __future__ import annotations

import re

import torch

from megagrow.state import MOMENTS, FullState, with_steps

DEPTH_MAP_KINDS = ("interpolation", "stacking")
MOMENT_MODES = ("copy", "reset", "keep", "fresh")

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _check_sizes(n_live: object, depth: object, what: tuple[str, str] = ("n_live", "depth")) -> tuple[int, int]:
    for name, value in zip(what, (n_live, depth), strict=True):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if n_live < 1:
        raise ValueError(f"{what[0]}={n_live} must be >= 1")
    if depth < n_live:
        raise ValueError(f"{what[1]}={depth} must be >= {what[0]}={n_live} (1 <= {what[0]} <= {what[1]})")
    return n_live, depth


def interpolation_map(n_live: int, depth: int) -> list[int]:
    """phi(i) = floor(i * n_live / depth) for i in 0..depth-1."""
    n_live, depth = _check_sizes(n_live, depth)
    return [i * n_live // depth for i in range(depth)]


def stacking_map(n_live: int, depth: int, tail: str = "top") -> list[int]:
    """0..N-1 repeated floor(d/N) times, then the remainder r from the top slots N-r..N-1
    (``tail="top"``) or from 0..r-1 (``tail="mod"``, i.e. i mod N)."""
    n_live, depth = _check_sizes(n_live, depth)
    if tail not in ("top", "mod"):
        raise ValueError(f"stacking tail={tail!r}: must be 'top' (Apollo release) or 'mod' (i mod N)")
    q, r = divmod(depth, n_live)
    rest = range(n_live - r, n_live) if tail == "top" else range(r)
    return list(range(n_live)) * q + list(rest)


def layer_map(kind: str, n_live: int, depth: int) -> list[int]:
    """The depth map of ``kind`` (``interpolation`` or ``stacking``) for N live slots at depth d."""
    if kind == "interpolation":
        return interpolation_map(n_live, depth)
    if kind == "stacking":
        return stacking_map(n_live, depth)
    raise ValueError(f"unknown depth map kind {kind!r}; available: {', '.join(DEPTH_MAP_KINDS)}")


def split_block_name(name: str) -> tuple[int, str] | None:
    """``"blocks.3.attn.qkv.weight"`` -> ``(3, "attn.qkv.weight")``; ``None`` for non-block names."""
    m = _BLOCK_RE.match(name)
    return (int(m.group(1)), m.group(2)) if m else None


def block_slots(params: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    """Block parameters grouped by slot: ``{k: {suffix: tensor}}``."""
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in params.items():
        parsed = split_block_name(name)
        if parsed is not None:
            slots.setdefault(parsed[0], {})[parsed[1]] = t
    return slots


def _check_no_aliasing(params: dict[str, torch.Tensor]) -> None:
    """Each tensor must be stored once: two names viewing the same memory would be tied weights
    listed twice (our names list the tied LM head once, as ``embed.tokens.weight``)."""
    seen: dict[tuple[int, tuple[int, ...], tuple[int, ...]], str] = {}
    for name, t in params.items():
        if t.numel() == 0:
            continue
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()))
        if key in seen:
            raise ValueError(
                f"parameters {seen[key]!r} and {name!r} share storage (tied weights listed twice); "
                "a FullState must hold each tensor once"
            )
        seen[key] = name


def _check_state(state: FullState, n_old: int, where: str) -> dict[int, dict[str, torch.Tensor]]:
    _check_no_aliasing(state.params)
    slots = block_slots(state.params)
    missing = [k for k in range(n_old) if k not in slots]
    if missing:
        raise ValueError(f"{where}: n_old={n_old} but the state has no block slot(s) {missing} "
                         f"(slots present: {sorted(slots)})")
    ref = {s: tuple(t.shape) for s, t in slots[0].items()}
    for k in range(1, n_old):
        got = {s: tuple(t.shape) for s, t in slots[k].items()}
        if got != ref:
            raise ValueError(f"{where}: block slot {k} has different parameters/shapes than slot 0")
    present = [m for m in MOMENTS if getattr(state, m)]
    for m in present:
        keys = set(getattr(state, m))
        if keys != set(state.params):
            diff = sorted(keys ^ set(state.params))[:5]
            raise ValueError(f"{where}: {m} does not cover exactly the parameters (differs on {diff})")
    if len(present) == 1:
        raise ValueError(f"{where}: the state has {present[0]} but not the other Adam moment")
    return slots


def remap_depth(
    state: FullState,
    n_old: int,
    source_map: list[int],
    moments: str = "copy",
    n_slots: int | None = None,
    where: str = "remap_depth",
) -> FullState:
    """New block slot j <- old slot ``source_map[j]`` (every source < n_old); see :func:`expand_depth`."""
    if moments not in MOMENT_MODES:
        raise ValueError(f"{where}: moments={moments!r}: must be one of {', '.join(MOMENT_MODES)}")
    n_new = len(source_map)
    if any(not 0 <= s < n_old for s in source_map):
        raise ValueError(f"{where}: source map {source_map} reads slots outside 0..{n_old - 1}")
    n_out = n_new if n_slots is None else n_slots
    if isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < n_new:
        raise ValueError(f"{where}: n_slots={n_slots!r} must be an integer >= n_new={n_new}")
    slots = _check_state(state, n_old, where)
    extra = [k for k in range(n_new, n_out) if k not in slots]
    if extra:
        raise ValueError(f"{where}: n_slots={n_out} keeps slots {n_new}..{n_out - 1} from the input, "
                         f"but it lacks slot(s) {extra}")
    has_moments = bool(state.exp_avg)

    params: dict[str, torch.Tensor] = {}
    mom: dict[str, dict[str, torch.Tensor]] = {m: {} for m in MOMENTS}
    steps: dict[str, int] = {}
    # Non-block parameters (embeddings, final LN, heads) first, in input order; moments kept (except fresh).
    for name, t in state.params.items():
        if split_block_name(name) is None:
            params[name] = t.detach().clone()
            steps[name] = state.step_of(name)
            if has_moments and moments != "fresh":
                for m in MOMENTS:
                    mom[m][name] = getattr(state, m)[name].detach().clone()
    suffixes = list(slots[0])
    for j in range(n_out):
        src = source_map[j] if j < n_new else j  # slots beyond n_new pass through unchanged
        for s in suffixes:
            new_name, src_name = f"blocks.{j}.{s}", f"blocks.{src}.{s}"
            params[new_name] = state.params[src_name].detach().clone()
            steps[new_name] = _slot_step(state, new_name, src_name, moments if j < n_new else "copy", has_moments)
            if not has_moments or moments == "fresh":
                continue
            for m in MOMENTS:
                table = getattr(state, m)
                if j >= n_new or moments == "copy":
                    mom[m][new_name] = table[src_name].detach().clone()
                elif moments == "reset":
                    mom[m][new_name] = torch.zeros_like(state.params[src_name])
                else:  # keep: moments stay with the slot index, zeros for a slot the input lacks
                    own = table.get(new_name)
                    mom[m][new_name] = (own.detach().clone() if own is not None
                                        else torch.zeros_like(state.params[src_name]))
    if moments == "fresh":
        return FullState(params=params)
    return with_steps(params, mom["exp_avg"], mom["exp_avg_sq"], steps)


def _slot_step(state: FullState, new_name: str, src_name: str, moments: str, has_moments: bool) -> int:
    """AdamW step count of block parameter ``new_name`` (copied from ``src_name``): the step of the
    parameter whose moments it takes (``copy``: the source; ``keep``: its own slot), 0 where its moments
    are zero (``reset``; ``keep`` for a slot the input lacks) so that it starts like a fresh AdamW
    parameter. Without moments in the input the step follows the weights, like ``copy``."""
    if not has_moments or moments == "copy":
        return state.step_of(src_name)
    if moments == "keep" and new_name in state.params:
        return state.step_of(new_name)
    return 0


def expand_depth(
    state: FullState,
    n_old: int,
    n_new: int,
    kind: str = "interpolation",
    moments: str = "copy",
    n_slots: int | None = None,
) -> FullState:
    """Grow the live depth from ``n_old`` to ``n_new`` slots: new slot j = copy of old slot psi(j),
    psi = ``layer_map(kind, n_old, n_new)``; returns a new ``FullState`` (the input is not modified and
    the output shares no memory with it).

    - Only block slots ``< n_old`` are read; the input may hold more (e.g. a full-size model where only
      ``n_old`` slots are live). The output has block slots ``0..n_slots-1`` (default ``n_slots = n_new``);
      with ``n_slots > n_new`` the slots ``n_new..n_slots-1`` are passed through from the input unchanged
      (values, moments and step counts), like the Apollo release, which never touches non-live slots.
    - Non-block parameters (embeddings, final LN, heads; the tied LM head is ``embed.tokens.weight``,
      listed once) are copied unchanged. Aliased tensors in the input (a weight listed twice) are an error.
    - ``moments`` (only if the input has Adam moments; a state without them yields one without them):
        ``copy``  — new slot j takes the moments and the AdamW step count of its source slot psi(j) (the
                    moments follow the weights);
        ``reset`` — ``exp_avg`` and ``exp_avg_sq`` are zero for every new block slot ``0..n_new-1`` (also
                    the slots whose values did not change) and their step count is 0, so each starts like a
                    parameter added to a fresh AdamW (first update ~``lr`` per element for a
                    sign-consistent gradient, not the ~3.16 ``lr`` a zero moment bias-corrected with the
                    global step would give); non-block parameters keep their moments and steps;
        ``keep``  — the Apollo release: moments stay with the slot *index* (slot j keeps the input's slot-j
                    moments and step although its weights were overwritten); a slot the input lacks gets
                    zero moments and step 0 (in the release it has no AdamW state and starts fresh);
        ``fresh`` — StackBERT / G_stack reference recipes: a fresh optimizer, i.e. no moments at all
                    (empty dicts) and ``adam_step = 0``.
      Step counts are per parameter (:meth:`FullState.step_of`); ``adam_step`` stays the largest of them
      (the input's unless every parameter was reset).
    """
    n_old, n_new = _check_sizes(n_old, n_new, ("n_old", "n_new"))
    if kind not in DEPTH_MAP_KINDS:
        raise ValueError(f"unknown depth map kind {kind!r}; available: {', '.join(DEPTH_MAP_KINDS)}")
    return remap_depth(state, n_old, layer_map(kind, n_old, n_new), moments, n_slots, where="expand_depth")


__all__ = [
    "DEPTH_MAP_KINDS",
    "MOMENT_MODES",
    "block_slots",
    "expand_depth",
    "interpolation_map",
    "layer_map",
    "remap_depth",
    "split_block_name",
    "stacking_map",
]
