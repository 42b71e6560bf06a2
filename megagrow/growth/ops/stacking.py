"""Depth stacking of a ``FullState``: StackBERT (progressive stacking) and G_stack.

Orders (docs/methods/stackbert.md, docs/methods/gstack.md):

- StackBERT (Gong et al. 2019): double the depth by appending a copy of the whole stack,
  new layer l + L <- l, i.e. ``[l0..l(L-1), l0..l(L-1)]``: new slot j <- old slot j mod n_old with
  n_new = 2 * n_old. The reference recipe stacks L3 -> L6 -> L12 and resets the optimizer
  (optionally the Adam moments are duplicated the same way, step reset to 0).
- G_stack (Du et al. 2024): stack the whole layer list g times, ``[0..L/g-1] x g`` (g = 4 recommended):
  new slot j <- old slot j mod n_old with n_new = g * n_old; fresh optimizer and schedule.
- n_new not a multiple of n_old (neither paper needs it): the remainder r = n_new mod n_old comes from the
  *top* r old slots n_old-r..n_old-1 (bert2BERT's rule and the Apollo release's stacking map), or from
  slots 0..r-1 with ``tail="mod"`` (plain j mod n_old).

This is :func:`megagrow.growth.ops.depth.expand_depth` with the stacking map; the ``moments`` modes are the
same (default ``copy``; ``fresh`` reproduces the reference recipes' optimizer reset).
"""

from __future__ import annotations

import torch

from megagrow.growth.ops.depth import _check_sizes, interpolation_map, remap_depth, stacking_map
from megagrow.models.width_axes import RESIDUAL_WRITERS
from megagrow.state import FullState, with_steps

#: How a depth growth makes its new layers (``growth.depth_op``).
DEPTH_OPS = ("stack", "interleave", "middle", "identity")


def stack_depth(
    state: FullState,
    n_old: int,
    n_new: int,
    moments: str = "copy",
    tail: str = "top",
    n_slots: int | None = None,
) -> FullState:
    """New block slot j <- old slot ``stacking_map(n_old, n_new, tail)[j]`` (= j mod n_old when n_old
    divides n_new: StackBERT for n_new = 2 * n_old, G_stack for n_new = g * n_old). Only slots < n_old
    are read; non-block parameters are copied unchanged; ``moments`` and ``n_slots`` as in
    :func:`~megagrow.growth.ops.depth.expand_depth`."""
    n_old, n_new = _check_sizes(n_old, n_new, ("n_old", "n_new"))
    return remap_depth(state, n_old, stacking_map(n_old, n_new, tail), moments, n_slots, where="stack_depth")


def middle_map(n_old: int, n_new: int) -> list[int]:
    """MIDAS (Saunshi et al. 2024): the k = n_new - n_old middle layers ``a .. a+k-1`` (a = (n_old - k) // 2)
    duplicated in place, ``[0 .. a+k-1, a .. a+k-1, a+k .. n_old-1]``; k >= n_old (2x or more) is
    :func:`stacking_map` (the whole model is the middle block)."""
    n_old, n_new = _check_sizes(n_old, n_new, ("n_old", "n_new"))
    k = n_new - n_old
    if k >= n_old:
        return stacking_map(n_old, n_new)
    a = (n_old - k) // 2
    return [*range(a + k), *range(a, a + k), *range(a + k, n_old)]


def depth_source_map(op: str, n_old: int, n_new: int) -> list[int]:
    """New slot j <- old slot ``map[j]`` for depth operator ``op`` (identity uses the stacking order)."""
    if op in ("stack", "identity"):
        return stacking_map(n_old, n_new)
    if op == "interleave":
        return interpolation_map(n_old, n_new)
    if op == "middle":
        return middle_map(n_old, n_new)
    raise ValueError(f"growth.depth_op={op!r}: must be one of {', '.join(DEPTH_OPS)}")


def grow_depth(state: FullState, n_old: int, n_new: int, op: str = "stack", moments: str = "copy") -> FullState:
    """Depth growth by operator ``op`` (:data:`DEPTH_OPS`). ``identity``: stacking, then the residual writers of
    every slot past the first copy of its source (slots n_old..n_new-1) and their moments are zeroed, so each new
    block adds nothing to the residual stream: the grown pre-LN model computes the small one."""
    source = depth_source_map(op, n_old, n_new)
    out = remap_depth(state, n_old, source, moments, where=f"grow_depth({op})")
    if op != "identity":
        return out
    params = dict(out.params)
    moms = {m: dict(getattr(out, m)) for m in ("exp_avg", "exp_avg_sq")}
    for j in range(n_old, n_new):
        for s in RESIDUAL_WRITERS:
            name = f"blocks.{j}.{s}"
            if name not in params:
                raise ValueError(f"grow_depth(identity): the state has no {name} (a block without the pre-LN "
                                 f"residual writers {', '.join(RESIDUAL_WRITERS)})")
            params[name] = torch.zeros_like(params[name])
            for table in moms.values():
                if name in table:
                    table[name] = torch.zeros_like(table[name])
    if not out.exp_avg:
        return FullState(params=params)
    return with_steps(params, moms["exp_avg"], moms["exp_avg_sq"], {n: out.step_of(n) for n in params})


__all__ = ["DEPTH_OPS", "depth_source_map", "grow_depth", "middle_map", "stack_depth"]
