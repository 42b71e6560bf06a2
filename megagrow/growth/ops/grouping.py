"""Grouping (merge) matrices for the Multi-Level operators, as index maps plus the four axis maps.

A grouping of a dimension of size ``n`` into ``n'`` groups is the 0/1 matrix ``P`` (``n' x n``) with
``P[g, i] = 1`` iff fine unit ``i`` belongs to coarse group ``g``. With ``c_g`` the group sizes:

- ``A = diag(c)^-1 P`` (averaging, rows sum to 1), ``S = P`` (summing);
- ``A Sᵀ = I``: coarse -> fine -> coarse is exact.

The operators never build these matrices (they are exposed for tests and documentation); they apply
them along one tensor dimension with index operations, which is exact in floating point for groups
of size 2 (``(x + x) / 2 == x``, ``x / 2 + x / 2 == x`` barring subnormals):

================  ===============  ============================================
map               matrix           along the dimension
================  ===============  ============================================
``avg``           ``A``   (n'×n)   coarse g = mean of its group's fine units
``sum``           ``S``   (n'×n)   coarse g = sum of its group's fine units
``dup``           ``Sᵀ``  (n×n')   fine i = coarse g(i)
``split``         ``Aᵀ``  (n×n')   fine i = coarse g(i) / c_g(i)
================  ===============  ============================================

Transposes: ``avg`` <-> ``split``, ``sum`` <-> ``dup``.

Pure functions: stdlib + torch only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PAIRINGS = ("half", "adjacent")
AXIS_MAPS = ("avg", "sum", "dup", "split")
TRANSPOSE = {"avg": "split", "split": "avg", "sum": "dup", "dup": "sum"}


@dataclass(frozen=True)
class Grouping:
    """Fine unit ``i`` belongs to coarse group ``group_of[i]``; every group in ``0..n_groups-1`` is used."""

    group_of: tuple[int, ...]
    n_groups: int

    def __post_init__(self) -> None:
        if not self.group_of:
            raise ValueError("a grouping needs at least one fine unit")
        if sorted(set(self.group_of)) != list(range(self.n_groups)):
            raise ValueError(
                f"grouping must use every group 0..{self.n_groups - 1} and no other; got {sorted(set(self.group_of))}"
            )

    @property
    def n_fine(self) -> int:
        return len(self.group_of)

    def sizes(self) -> list[int]:
        """``c_g``, the number of fine units in each group."""
        counts = [0] * self.n_groups
        for g in self.group_of:
            counts[g] += 1
        return counts

    def merge_matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``P`` (``n_groups x n_fine``), 0/1."""
        p = torch.zeros(self.n_groups, self.n_fine, dtype=dtype)
        p[torch.tensor(self.group_of), torch.arange(self.n_fine)] = 1
        return p

    def average_matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``A = diag(c)^-1 P``."""
        p = self.merge_matrix(dtype)
        return p / p.sum(dim=1, keepdim=True)

    def expand(self, block: int) -> Grouping:
        """The same grouping on blocks of ``block`` contiguous channels (heads -> their channels):
        channel ``u * block + o`` goes to group ``group_of[u] * block + o``."""
        if block < 1:
            raise ValueError(f"block size must be >= 1, got {block}")
        return Grouping(
            tuple(g * block + o for g in self.group_of for o in range(block)), self.n_groups * block
        )


def pair_grouping(n: int, pairing: str = "half", what: str = "dimension") -> Grouping:
    """Groups of two: ``"half"`` pairs unit ``i`` with ``i + n/2`` (``P = [I | I]``, the paper's and the
    reference code's choice); ``"adjacent"`` pairs ``2i`` with ``2i + 1``."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing={pairing!r}: must be one of {', '.join(PAIRINGS)}")
    if n < 2 or n % 2:
        raise ValueError(f"cannot pair the units of {what} of size {n}: it must be even and >= 2")
    if pairing == "half":
        return Grouping(tuple(i % (n // 2) for i in range(n)), n // 2)
    return Grouping(tuple(i // 2 for i in range(n)), n // 2)


def apply_axis(x: torch.Tensor, dim: int, grouping: Grouping, how: str) -> torch.Tensor:
    """Apply one of :data:`AXIS_MAPS` along ``dim`` (a new tensor; ``x`` is not modified)."""
    dim = dim % x.dim()
    idx = torch.tensor(grouping.group_of, device=x.device)
    if how in ("avg", "sum"):
        if x.shape[dim] != grouping.n_fine:
            raise ValueError(f"dimension {dim} of a {tuple(x.shape)} tensor is not the fine size {grouping.n_fine}")
        shape = list(x.shape)
        shape[dim] = grouping.n_groups
        out = torch.zeros(shape, dtype=x.dtype, device=x.device).index_add_(dim, idx, x)
        if how == "avg":
            counts = torch.tensor(grouping.sizes(), dtype=x.dtype, device=x.device)
            out = out / _along(counts, dim, x.dim())
        return out
    if how in ("dup", "split"):
        if x.shape[dim] != grouping.n_groups:
            raise ValueError(
                f"dimension {dim} of a {tuple(x.shape)} tensor is not the coarse size {grouping.n_groups}"
            )
        out = x.index_select(dim, idx)
        if how == "split":
            counts = torch.tensor(grouping.sizes(), dtype=x.dtype, device=x.device)[idx]
            out = out / _along(counts, dim, x.dim())
        return out
    raise ValueError(f"unknown axis map {how!r}: must be one of {', '.join(AXIS_MAPS)}")


def _along(v: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = -1
    return v.reshape(shape)
