"""``train.phase_batching``: a small growth phase runs its micro-batches merged, so it fills the device.

A plan's small phases (Multi-level's coarse model, MSG's and bert2BERT's small stages, Apollo's shallow stages)
run the micro-batch sized for the full model: at GPT-Base's half width and depth one H200 step costs 2.1x the
full model's seconds per FLOP, and 1.28x when the half model gets 4x the tokens per micro-batch
(benchmarks/throughput). With ``auto`` a step of ``grad_accum`` micro-batches runs as ``grad_accum / k`` merged
micro-batches of ``k`` each, where ``k`` is the largest divisor of ``grad_accum`` whose merged micro-batch costs
no more FLOPs than one micro-batch of the full (target) model, so its activation memory stays within what the
full model needs. Only consecutive micro-batches that run the same layer map without growth masks merge.

The samples, their order and the tokens per optimizer step are unchanged; the loss of a merged micro-batch is
the mean over its positions, which equals the mean of its micro-batches' means where every sample predicts the
same number of positions (GPT: every token; DeiT: one class): the same loss and gradients to rounding. BERT's
masked-LM loss is a mean over a varying number of masked positions per micro-batch, so BERT never merges. With
dropout on, a merged micro-batch draws its masks from one seed instead of ``k``. Applies where megagrow runs the
step itself (ZeRO-0 on one rank, :mod:`megagrow.distributed.direct`); elsewhere DeepSpeed's engine fixes the
micro-batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from megagrow.growth.plans.base import Decision

MERGING_FAMILIES = ("gpt", "deit")


def merge_factor(grad_accum: int, full_cost: float, phase_cost: float) -> int:
    """The largest divisor ``k`` of ``grad_accum`` with ``k * phase_cost <= full_cost`` (at least 1)."""
    if grad_accum < 1 or phase_cost <= 0:
        raise ValueError(f"merge_factor: grad_accum={grad_accum} and phase_cost={phase_cost} must be positive")
    best = 1
    for k in range(2, grad_accum + 1):
        if grad_accum % k == 0 and k * phase_cost <= full_cost * (1 + 1e-9):
            best = k
    return best


def _mergeable(a: Decision, b: Decision) -> bool:
    return a.layer_map == b.layer_map and a.extras.get("masks") is None and b.extras.get("masks") is None


def merge_groups(decisions: Sequence[Decision], k: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each micro-batch group to run merged: consecutive decisions that run the same layer map
    without masks, at most ``k`` per group, in order, covering every decision exactly once."""
    groups: list[tuple[int, int]] = []
    i = 0
    while i < len(decisions):
        n = 1
        while n < k and i + n < len(decisions) and _mergeable(decisions[i], decisions[i + n]):
            n += 1
        groups.append((i, n))
        i += n
    return groups
