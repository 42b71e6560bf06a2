"""Depth stacking of a ``FullState``: StackBERT (progressive stacking) and G_stack.

Orders (growth-algorithms notes §3.1, §3.5):

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

from megagrow.growth.ops.depth import _check_sizes, remap_depth, stacking_map
from megagrow.state import FullState


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


__all__ = ["stack_depth"]
