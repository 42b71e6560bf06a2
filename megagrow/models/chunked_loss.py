"""A fused output head + cross-entropy that never materialises the full ``[N, V]`` logits (``train.loss_chunk``).

``linear_cross_entropy(hidden, weight, labels, chunk)`` equals
``cross_entropy(F.linear(hidden, weight, bias), labels)`` of :mod:`megagrow.models.core`: the logits are computed
in the input dtype (the autocast dtype under ``torch.autocast``), upcast to fp32 for the log-softmax, and the loss
is the sum over the positions with ``labels != ignore_index`` divided by their count (clamped to >= 1).

It runs ``chunk`` rows at a time. With autograd on, each chunk's forward also computes the gradient of the loss
w.r.t. that chunk's logits (``softmax - onehot``, over the count), turns it into the chunk's rows of the hidden
gradient and adds its share of the weight (and bias) gradient, then frees the chunk's logits (the approach of
Liger-Kernel's FusedLinearCrossEntropy). The backward only scales the saved gradients by the incoming gradient.
Peak memory is one chunk's fp32 logits and their low-precision gradient instead of ``[N, V]`` logits, their fp32
copy and their gradients; the price is holding the fp32 weight gradient from the forward to the backward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype ``F.linear(hidden, weight)`` would compute in here: the autocast dtype where autocast is on for
    ``hidden``'s device, else the promotion of both dtypes."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def chunk_logits(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``h @ weight.T (+ bias)`` in the common dtype of the (already cast) arguments, upcast to fp32."""
    return F.linear(h, weight, bias).float()


def chunk_loss_and_grad(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, count: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For fp32 ``logits`` [n, V] and ``labels`` [n]: the summed cross-entropy of the non-ignored rows and the
    gradient of ``that sum / count`` w.r.t. the logits (``(softmax - onehot) / count``, zero on ignored rows).

    Overwrites ``logits`` (it becomes the gradient) to keep one [n, V] buffer."""
    valid = labels != ignore_index
    target = torch.where(valid, labels, torch.zeros_like(labels))[:, None]
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    nll = (lse - logits.gather(1, target)).squeeze(1)
    loss = torch.where(valid, nll, torch.zeros_like(nll)).sum()
    grad = logits.sub_(lse).exp_()  # softmax
    grad.scatter_add_(1, target, torch.full_like(lse, -1.0))
    grad.mul_((valid.to(grad.dtype) / count.to(grad.dtype))[:, None])
    return loss, grad


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss and all gradients in the forward, chunk by chunk; the backward scales the saved gradients."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
        chunk: int,
        ignore_index: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        count = (labels != ignore_index).sum().clamp(min=1)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
            grad_b = None if bias is None or not need_b else torch.zeros(bias.shape, dtype=torch.float32,
                                                                         device=bias.device)
            for start in range(0, hidden.shape[0], chunk):
                h = hidden[start:start + chunk].to(dtype)
                part, g = chunk_loss_and_grad(chunk_logits(h, w, b), labels[start:start + chunk], ignore_index, count)
                loss = loss + part
                if grad_b is not None:
                    grad_b += g.sum(0)
                g = g.to(dtype)
                if grad_h is not None:
                    grad_h[start:start + chunk] = g @ w
                if grad_w is not None:
                    grad_w += (g.t() @ h).float()
        ctx.save_for_backward(
            grad_h,
            None if grad_w is None else grad_w.to(weight.dtype),
            None if grad_b is None or bias is None else grad_b.to(bias.dtype),
        )
        return loss / count

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        grad_h, grad_w, grad_b = ctx.saved_tensors

        def scaled(g: torch.Tensor | None) -> torch.Tensor | None:
            return None if g is None else g * grad_out.to(g.dtype)

        return scaled(grad_h), scaled(grad_w), scaled(grad_b), None, None, None, None


def _loss_only(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor,
               chunk: int, ignore_index: int, dtype: torch.dtype) -> torch.Tensor:
    """The loss without gradients (autograd off or nothing requires grad): no gradient matmuls."""
    count = (labels != ignore_index).sum().clamp(min=1)
    w = weight.to(dtype)
    b = None if bias is None else bias.to(dtype)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    with torch.autocast(hidden.device.type, enabled=False):
        for start in range(0, hidden.shape[0], chunk):
            logits = chunk_logits(hidden[start:start + chunk].to(dtype), w, b)
            total = total + F.cross_entropy(logits, labels[start:start + chunk], ignore_index=ignore_index,
                                            reduction="sum")
    return total / count


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk: int,
    ignore_index: int = IGNORE_INDEX,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``cross_entropy(F.linear(hidden, weight, bias), labels)`` computed ``chunk`` rows at a time.

    ``hidden`` [N, d], ``weight`` [V, d], ``bias`` [V] or None, ``labels`` [N] (``ignore_index`` = not predicted).
    Returns the fp32 scalar mean over the non-ignored rows (0 if there are none; still attached to the graph, with
    zero gradients). Gradients flow to ``hidden``, ``weight`` and ``bias`` in their own dtypes."""
    if chunk <= 0:
        raise ValueError(f"chunk={chunk}: must be > 0")
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)}: expected [N, d] and [V, d]")
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)}: expected [{hidden.shape[0]}] (one per row of hidden)")
    dtype = compute_dtype(hidden, weight)
    tensors = [hidden, weight] + ([] if bias is None else [bias])
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _LinearCrossEntropy.apply(hidden, weight, bias, labels, chunk, ignore_index, dtype)
    return _loss_only(hidden, weight, bias, labels, chunk, ignore_index, dtype)


__all__ = ["chunk_loss_and_grad", "compute_dtype", "linear_cross_entropy"]
