"""Fault handling in the training loop: non-finite losses and gradients, and fault injection for tests.

**Non-finite steps.** Every optimizer step, each rank flags a non-finite loss (and, where megagrow owns
the optimizer step — ZeRO-0 in fp32 or bf16-autocast — a non-finite gradient, seen in the norm that its
clipping computes); the flags are summed with the step's other statistics (no extra collective, one host
sync per step), so all ranks agree. A flagged step is *skipped*: no parameter, moment or Adam step count
moves. Where megagrow owns the step the gradients are dropped before it (torch AdamW skips tensors without a
gradient); under ZeRO 1-3 and DeepSpeed's bf16, DeepSpeed's optimizers already refuse a step whose
gradient norm is not finite (``engine.skipped_steps``), which also catches a non-finite gradient behind a
finite loss. Then ``train.nonfinite`` decides: ``skip`` counts it (``skipped_steps`` in the metrics) and
goes on, stopping with a checkpoint after ``train.max_consecutive_skips`` in a row; ``stop`` checkpoints
the last good state and exits with :data:`EXIT_NONFINITE`.

**Fault injection** (tests only): ``MEGAGROW_FAULT=<where>:<step>[-<last>][:<seconds>]`` sleeps at a named point of
a given step (``transition``, ``checkpoint``) so a test can ``kill -9`` the job exactly there, or with
``nan`` poisons the loss of that step on rank ``MEGAGROW_FAULT_RANK`` (default all).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from megagrow.distributed.direct import trainable_params

EXIT_NONFINITE = 3
EXIT_PEER = 4


class RendezvousFailed(RuntimeError):
    """The ranks could not form the job (init_process_group failed); the message says what to check."""


class NonFiniteStop(RuntimeError):
    """Raised after the checkpoint when non-finite steps end the run."""


def owns_step(zero_stage: int, precision: str) -> bool:
    """ZeRO-0 without DeepSpeed's bf16 wrapper (fp32, bf16-autocast): the torch optimizer steps the module
    parameters directly and megagrow clips the gradients and checks them (DeepSpeed's clipping is off,
    see :func:`~megagrow.config.deepspeed_config`)."""
    return zero_stage == 0 and precision != "bf16"


def _owns_step(engine) -> bool:
    return engine.zero_optimization_stage() == 0 and not engine.bfloat16_enabled()


def clip_owned(engine, max_norm: float) -> torch.Tensor | None:
    """Where megagrow owns the step: clip the (already all-reduced) gradients to ``max_norm`` (0 = no clipping)
    and return their global norm, a 0-d tensor on the device. Fused (``foreach``) and without a host sync, unlike
    DeepSpeed's ZeRO-0 clipping (one norm per parameter); the same formula (``max_norm / (norm + 1e-6)``, applied
    only below 1). None where DeepSpeed's optimizer clips and checks (ZeRO 1-3, DeepSpeed's bf16)."""
    if not _owns_step(engine):
        return None
    params = [p for p in trainable_params(engine) if p.grad is not None]
    if not params:
        return None
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    return torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)


def local_bad(loss_sum: torch.Tensor, grad_norm: torch.Tensor | None) -> torch.Tensor:
    """This rank's flag as a 0-d float32 tensor (1 = bad), computed on the device without a host sync: a non-finite
    loss, or (where megagrow owns the step, ``grad_norm`` from :func:`clip_owned`) a non-finite gradient."""
    total = loss_sum if grad_norm is None else loss_sum + grad_norm.to(loss_sum.device)  # non-finite if either is
    return torch.isfinite(total).logical_not_().to(torch.float32)


@dataclass
class NonFiniteGuard:
    policy: str  # "skip" | "stop"
    max_consecutive: int
    consecutive: int = 0

    def step(self, engine, bad: bool, step: int) -> bool:
        """Run the optimizer step (the last ``engine.step()`` of this step's micro-batches) unless ``bad``
        (agreed by all ranks); returns whether the step was skipped. Raises :class:`NonFiniteStop` when the
        policy ends the run (the caller checkpoints first: the state is the last good one)."""
        before = getattr(engine, "skipped_steps", 0)
        if bad and _owns_step(engine):
            for p in engine.module.parameters():
                p.grad = None  # torch AdamW leaves tensors without a gradient alone (moments and step too)
            engine.clip_fp32_gradients = lambda: None  # DeepSpeed's clip cannot take an all-None gradient list
            try:
                engine.step()
            finally:
                del engine.clip_fp32_gradients
        else:
            engine.step()
        skipped = bad or getattr(engine, "skipped_steps", 0) > before
        if bad and not _owns_step(engine) and not getattr(engine, "skipped_steps", 0) > before:
            raise RuntimeError(f"step {step}: non-finite loss, and DeepSpeed applied the step anyway (its overflow "
                               "check needs gradient clipping: set optim.grad_clip > 0); the parameters are lost")
        self.consecutive = self.consecutive + 1 if skipped else 0
        return skipped

    def observe(self, run: int, longest: int) -> None:
        """Deferred statistics (:mod:`megagrow.trainer.step_stats`): the steps were skipped on the device; ``run`` is
        the current run of consecutive skips, ``longest`` the longest in the window read back. A run that reached the
        limit stops the run even if later steps were applied (they are kept)."""
        self.consecutive = longest if longest >= self.max_consecutive else run

    def verdict(self, step: int) -> str | None:
        """Why the run must stop now, or None."""
        if not self.consecutive:
            return None
        if self.policy == "stop":
            return f"step {step}: non-finite loss or gradient (train.nonfinite=stop); the step was not applied"
        if self.consecutive >= self.max_consecutive:
            return (f"step {step}: {self.consecutive} consecutive non-finite steps skipped "
                    f"(train.max_consecutive_skips={self.max_consecutive})")
        return None


def peer_failure(e: BaseException, timeout_minutes: float) -> str | None:
    """A clear message when ``e`` is a failed collective of a multi-rank run (a peer died or hung past
    ``distributed.timeout_minutes``), else None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return None
    text = f"{type(e).__name__}: {e}"
    markers = ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "broken pipe", "socket")
    if not isinstance(e, getattr(dist, "DistError", ())) and not any(m in text.lower() for m in markers):
        return None
    return (f"rank {dist.get_rank()} of {dist.get_world_size()}: a collective failed — another rank died or did "
            f"not answer within distributed.timeout_minutes={timeout_minutes:g} ({text.splitlines()[0][:300]})")


def fault(where: str, step: int, rank: int = 0) -> str | None:
    """The injected fault for (``where``, ``step``) from ``MEGAGROW_FAULT``: sleeps for ``sleep`` faults
    (returns "sleep"), returns "nan" for a loss to poison, else None."""
    spec = os.environ.get("MEGAGROW_FAULT")
    if not spec:
        return None
    parts = spec.split(":")
    if len(parts) < 2 or parts[0] != where:
        return None
    first, _, last = parts[1].partition("-")  # one step, or an inclusive range "a-b"
    if not int(first) <= step <= int(last or first):
        return None
    only = os.environ.get("MEGAGROW_FAULT_RANK")
    if only is not None and int(only) != rank:
        return None
    if where == "nan":
        return "nan"
    print(f"[megagrow] fault injection: pausing in {where} at step {step}", flush=True)
    time.sleep(float(parts[2]) if len(parts) > 2 else 3600.0)
    return "sleep"
