"""LiGO (Wang et al., ICLR 2023): a learned linear growth operator from a small model to a large one.

Spec: ``docs/methods/ligo.md``. Every grown parameter is a learned linear
function of the small ones, factorized as depth after width:

    W_l^new = sum_j w[l, j] * (B_j W_j A_jᵀ)        (l < L_t target layers, j < L_s small layers)

- **Width** expanders are ``M = [I ; E]`` (``n_t x n_s``): the first ``n_s`` units are the old ones, only the
  ``(n_t - n_s) x n_s`` block ``E`` is learned (new units are linear combinations of old units). Tying, as in
  the reference: one residual-stream expander ``width.emb`` for every tensor's hidden side (embeddings'
  output dim, every LayerNorm, the residual input of Q/K/V and FFN-up, the residual output of O and
  FFN-down, the MLM/DeiT heads); per small layer ``j`` its own out-expanders ``width.j.q``, ``width.j.k``,
  ``width.j.v`` and ``width.j.ffn``; O's input uses V's expander and FFN-down's input FFN-up's. Biases and
  LayerNorms expand with their tensor's out side. Both sides of a matrix use ``M`` itself (``B W Aᵀ``): no
  ``1/2`` on split inputs, as in the reference — the operator is learned, not function preserving.
- **Depth** blending coefficients ``w ∈ R^{L_t x L_s}``, separate per block tensor (``depth.<suffix>``,
  so a layer's weight and bias have their own).
- **Init** (reference defaults): width ``rand`` (``E`` uniform, rows normalized to sum 1: each new unit a
  convex combination of old ones) or ``sel`` (random one-hot rows: copies, as FPI without the split);
  depth ``stackbert_noisy``: one-hot on ``l mod L_s`` plus ``U(0, noise)``, rows normalized.

:func:`fit_operator` trains only the operator (small weights frozen) for a number of steps on a loss the
caller supplies — the grown model's LM loss on the run's data — then :func:`materialize` gives the grown
parameters. Every materialization returns its forward FLOPs (counted per tensor contraction, so
``megagrow`` can charge ``3x`` of them — forward + backward — for every operator-training micro-batch).

Optimizer state: the grown model starts with a fresh AdamW (as the reference, which materializes the
model and starts a normal training run); there is no moment mapping through a learned operator.

Pure functions: stdlib + torch + ``megagrow.state``/sibling ops only; nothing here builds a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from megagrow.growth.ops.depth import split_block_name
from megagrow.models.dims import Dims, check_family
from megagrow.models.width_axes import width_axes
from megagrow.state import FullState

WIDTH_INITS = ("rand", "sel")


@dataclass(frozen=True)
class LigoShape:
    """The family and the small (``src``) and target (``dst``) sizes. Head size is kept, so the attention
    width equals the hidden size on both sides (``n_heads`` is not read)."""

    family: str
    src: Dims
    dst: Dims

    def __post_init__(self) -> None:
        check_family(self.family)
        for what in ("hidden", "ffn", "n_layers"):
            small, big = getattr(self.src, what), getattr(self.dst, what)
            if not 0 < small <= big:
                raise ValueError(f"LiGO grows {what} {small} -> {big}: the target must be >= the small size > 0")


def _width_block(n_s: int, n_t: int, init: str, g: torch.Generator) -> torch.Tensor:
    k = n_t - n_s
    if init == "rand":
        e = torch.rand(k, n_s, generator=g, dtype=torch.float64)
        return (e / e.sum(dim=1, keepdim=True)).float()
    if init == "sel":
        return torch.nn.functional.one_hot(torch.randint(n_s, (k,), generator=g), n_s).float()
    raise ValueError(f"LiGO width init {init!r}: must be one of {', '.join(WIDTH_INITS)}")


def init_operator(small: dict[str, torch.Tensor], shape: LigoShape, width_init: str = "rand",
                  depth_noise: float = 0.03, seed: int = 0) -> dict[str, torch.Tensor]:
    """The operator's learnable tensors for the small parameters ``small`` (names and shapes used only),
    initialized as the reference does; a pure function of ``seed``."""
    if width_init not in WIDTH_INITS:
        raise ValueError(f"LiGO width init {width_init!r}: must be one of {', '.join(WIDTH_INITS)}")
    if depth_noise < 0:
        raise ValueError(f"LiGO depth noise must be >= 0, got {depth_noise}")
    g = torch.Generator().manual_seed(seed)
    src, dst = shape.src, shape.dst
    op: dict[str, torch.Tensor] = {"width.emb": _width_block(src.hidden, dst.hidden, width_init, g)}
    for j in range(src.n_layers):
        for key in ("q", "k", "v"):
            op[f"width.{j}.{key}"] = _width_block(src.hidden, dst.hidden, width_init, g)
        op[f"width.{j}.ffn"] = _width_block(src.ffn, dst.ffn, width_init, g)
    suffixes = sorted({p[1] for n in small if (p := split_block_name(n)) is not None})
    target = torch.arange(dst.n_layers) % src.n_layers
    for suffix in suffixes:
        w = torch.nn.functional.one_hot(target, src.n_layers).double()
        w = w + depth_noise * torch.rand(dst.n_layers, src.n_layers, generator=g, dtype=torch.float64)
        op[f"depth.{suffix}"] = (w / w.sum(dim=1, keepdim=True)).float()
    return op


def expander(e: torch.Tensor) -> torch.Tensor:
    """``M = [I ; E]`` for the learned block ``E`` (``(n_t - n_s) x n_s``)."""
    n_s = e.shape[1]
    return torch.cat([torch.eye(n_s, dtype=e.dtype, device=e.device), e], dim=0)


class _Flops:
    def __init__(self) -> None:
        self.n = 0

    def along(self, x: torch.Tensor, dim: int, m: torch.Tensor) -> torch.Tensor:
        """``y`` with ``y[.., i, ..] = sum_s m[i, s] x[.., s, ..]`` along ``dim``."""
        dim = dim % x.dim()
        y = torch.tensordot(m, x.movedim(dim, 0), dims=([1], [0])).movedim(0, dim)
        self.n += 2 * y.numel() * m.shape[1]
        return y


def _check(small: dict[str, torch.Tensor], op: dict[str, torch.Tensor], shape: LigoShape) -> None:
    slots = sorted({p[0] for n in small if (p := split_block_name(n)) is not None})
    if slots != list(range(shape.src.n_layers)):
        raise ValueError(f"LiGO: expected small blocks 0..{shape.src.n_layers - 1}, the state has {slots}")
    missing = [f"width.{j}.{k}" for j in slots for k in ("q", "k", "v", "ffn") if f"width.{j}.{k}" not in op]
    if "width.emb" not in op or missing:
        raise ValueError(f"LiGO operator is missing {(['width.emb'] if 'width.emb' not in op else []) + missing}")
    qkv = small.get("blocks.0.attn.qkv.weight")
    if qkv is not None and tuple(qkv.shape) != (3 * shape.src.hidden, shape.src.hidden):
        raise ValueError(f"LiGO: blocks.0.attn.qkv.weight has shape {tuple(qkv.shape)}, expected "
                         f"{(3 * shape.src.hidden, shape.src.hidden)} for hidden={shape.src.hidden}")


def materialize(small: dict[str, torch.Tensor], op: dict[str, torch.Tensor],
                shape: LigoShape) -> tuple[dict[str, torch.Tensor], int]:
    """The grown parameters (differentiable in ``op``) and the forward FLOPs spent computing them."""
    _check(small, op, shape)
    fl = _Flops()
    m_emb = expander(op["width.emb"])
    widened: dict[str, list[torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for name, x in small.items():
        parsed = split_block_name(name)
        if parsed is None:
            axes, _ = width_axes(name, shape.family)
            y = x
            for dim, key, _role in axes:
                if key != "e":
                    raise ValueError(f"LiGO: unexpected width key {key!r} on {name}")
                y = fl.along(y, dim, m_emb)
            out[name] = y
            continue
        j, suffix = parsed
        axes, fused = width_axes(name, shape.family)
        mats = {"e": m_emb, "f": expander(op[f"width.{j}.ffn"]), "a": expander(op[f"width.{j}.v"])}
        if fused:  # Q, K, V thirds with their own out-expanders, stacked back along dim 0
            parts = x.reshape(3, x.shape[0] // 3, *x.shape[1:])
            ys = []
            for t, key in enumerate(("q", "k", "v")):
                y = parts[t]
                for dim, ax, _role in axes:  # dims refer to the [3, ...] view: shift by one
                    y = fl.along(y, dim - 1, expander(op[f"width.{j}.{key}"]) if ax == "a" else mats[ax])
                ys.append(y)
            y = torch.cat(ys, dim=0)
        else:
            y = x
            for dim, ax, _role in axes:
                y = fl.along(y, dim, mats[ax])
        widened.setdefault(suffix, [None] * shape.src.n_layers)[j] = y  # type: ignore[list-item]
    for suffix, per_layer in widened.items():
        w = op[f"depth.{suffix}"]
        if tuple(w.shape) != (shape.dst.n_layers, shape.src.n_layers):
            raise ValueError(f"LiGO depth.{suffix} has shape {tuple(w.shape)}, expected "
                             f"{(shape.dst.n_layers, shape.src.n_layers)}")
        grown = fl.along(torch.stack(per_layer), 0, w)
        for layer in range(shape.dst.n_layers):
            out[f"blocks.{layer}.{suffix}"] = grown[layer]
    return out, fl.n


def materialize_flops(small_shapes: dict[str, tuple[int, ...]], shape: LigoShape) -> int:
    """Forward FLOPs of one :func:`materialize` for small parameters of these shapes (on the meta device,
    nothing allocated)."""
    small = {n: torch.empty(s, device="meta") for n, s in small_shapes.items()}
    op = {k: v.to("meta") for k, v in init_operator(small, shape, depth_noise=0.0).items()}
    return materialize(small, op, shape)[1]


@dataclass
class FitResult:
    state: FullState
    losses: list[float]  # this rank's mean loss per operator-training step
    flops: int  # materialization FLOPs charged (forward + backward, 3x forward)


def fit_operator(
    small: FullState,
    shape: LigoShape,
    loss_fn: Callable[[dict[str, torch.Tensor], int, int], torch.Tensor],
    steps: int,
    grad_accum: int = 1,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    width_init: str = "rand",
    depth_noise: float = 0.03,
    seed: int = 0,
    device: torch.device | str = "cpu",
    all_reduce_mean: Callable[[list[torch.Tensor]], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train the operator for ``steps`` AdamW steps (no weight decay) on ``loss_fn(params, step, micro)`` —
    the grown model's loss on the caller's next micro-batch — with the small weights frozen, and return
    the materialized grown state with a fresh optimizer (no moments, Adam step 0).

    ``all_reduce_mean`` averages the operator's gradients across data-parallel ranks (each rank sees its
    own micro-batches). Deterministic given ``seed`` and the losses."""
    if steps < 0 or grad_accum < 1:
        raise ValueError(f"LiGO fit: steps={steps} must be >= 0 and grad_accum={grad_accum} >= 1")
    frozen = {n: t.detach().to(device) for n, t in small.params.items()}
    op = {k: v.to(device).requires_grad_(True) for k, v in init_operator(frozen, shape, width_init, depth_noise,
                                                                         seed).items()}
    opt = torch.optim.AdamW(list(op.values()), lr=lr, betas=betas, eps=eps, weight_decay=0.0)
    losses: list[float] = []
    flops = 0
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(grad_accum):
            params, f = materialize(frozen, op, shape)
            flops += 3 * f
            loss = loss_fn(params, step, micro)
            (loss / grad_accum).backward()
            total += float(loss.detach())
        if all_reduce_mean is not None:
            all_reduce_mean([p.grad for p in op.values() if p.grad is not None])
        opt.step()
        losses.append(total / grad_accum)
        if on_step is not None:
            on_step(step, losses[-1])
    with torch.no_grad():
        params, f = materialize(frozen, op, shape)
    flops += f
    return FitResult(FullState({n: t.detach().clone() for n, t in params.items()}), losses, flops)
