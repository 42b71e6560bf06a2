"""A step's statistics without a host sync: kept on the device, read back at the steps that need them.

A GPU step is launched by the host ahead of the device; reading any value back (``float(loss)``, ``.tolist()``)
makes the host wait for the device to finish, and the device then waits for the host to launch the next step's
kernels (data, bookkeeping, the forward's first launches): on GPT-Base on an H200 that was several ms of a 50 ms
step. So where megagrow owns the optimizer step with torch's fused AdamW (ZeRO-0, fp32 or bf16-autocast) and a
non-finite step is skipped rather than stopped at (``train.nonfinite: skip``), a step:

* flags itself non-finite on the device (loss, gradient norm), summed over ranks by an all-reduce on the device;
* is skipped on the device: the flag is fused AdamW's ``found_inf``, which leaves parameters, moments and step
  counts untouched (the same effect as the synchronous path's dropped gradients);
* adds its loss (if applied), its skip and the run of consecutive skips to device accumulators, and its tokens
  and FLOPs (known on the host) to host sums.

:meth:`DeferredStats.flush` reads all of it back with one host sync and one small collective, at the steps that
need it: metrics records, evaluations, checkpoints, the last step, and (one rank) a stop signal. A multi-rank run
therefore notices a stop signal at its next flush, at most ``logging.log_every`` steps later; and a run of
``train.max_consecutive_skips`` skipped steps stops at the next flush instead of at once (the skipped steps
changed nothing; steps applied after them are kept). Everywhere else (ZeRO 1-3, DeepSpeed's bf16,
``train.nonfinite: stop``) the step syncs as before: :func:`deferred_applies`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def deferred_applies(owns_step: bool, fused_optimizer: bool, nonfinite: str) -> bool:
    """Whether a step's statistics can wait on the device (see the module docstring)."""
    return owns_step and fused_optimizer and nonfinite == "skip"


@dataclass
class Flushed:
    """What a flush read back: sums over the steps since the last flush, over all ranks."""

    steps: int
    loss: float  # sum of the applied steps' global loss sums
    skipped: int
    run: int  # consecutive skipped steps at the end of the window (continuing into the next)
    longest: int  # the longest run of consecutive skipped steps that ended or continues in this window
    tokens: int
    flops: int
    extra_micro_batches: int
    stop: bool  # some rank asked to stop


@dataclass
class DeferredStats:
    """Per-step device values and host sums between flushes (one per run; see the module docstring). A step adds
    no device work of its own on one rank (its loss and flag tensors are kept as they are) and one small all-reduce
    on several; the arithmetic over the window happens on the host at the flush."""

    device: torch.device
    world: int
    tokens: int = 0  # this rank's
    flops: int = 0
    extra_micro_batches: int = 0
    run: int = 0  # consecutive skipped steps so far (carried across flushes)
    _steps: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list, repr=False)  # (loss sum, bad)

    @property
    def steps(self) -> int:
        return len(self._steps)

    @torch.no_grad()
    def add_step(self, loss_sum: torch.Tensor, bad_local: torch.Tensor) -> torch.Tensor:
        """Account one step's loss sum and non-finite flag (0-d device tensors, the flag float32: 1 = bad); return
        ``found_inf`` for the fused optimizer (float32, 1 = skip this step on every rank). No host sync."""
        loss_sum, bad_local = loss_sum.detach(), bad_local.detach()
        if self.world == 1:
            self._steps.append((loss_sum, bad_local))
            return bad_local
        pair = torch.stack([loss_sum.to(torch.float64), bad_local.to(torch.float64)])
        torch.distributed.all_reduce(pair)  # on the device: queued, not waited for
        self._steps.append((pair[0], pair[1]))
        return (pair[1] > 0).to(torch.float32)

    def add_host(self, tokens: int, flops: int, extra_micro_batches: int = 0) -> None:
        self.tokens += tokens
        self.flops += flops
        self.extra_micro_batches += extra_micro_batches

    def flush(self, stop_local: bool) -> Flushed:
        """Read everything back (one host sync, one small collective) and start a new window."""
        from megagrow.distributed.engine import all_reduce_sum

        n = len(self._steps)
        values = torch.stack([torch.stack([a.to(torch.float64), b.to(torch.float64)]) for a, b in self._steps]
                             ).tolist() if n else []  # the device values are already global
        loss, skipped, longest = 0.0, 0, self.run
        for step_loss, bad in values:
            if bad > 0:
                skipped += 1
                self.run += 1
                longest = max(longest, self.run)
            else:
                loss += step_loss
                self.run = 0
        tokens, flops, extra, stop = all_reduce_sum(
            [float(self.tokens), float(self.flops), float(self.extra_micro_batches), float(stop_local)], self.device)
        out = Flushed(n, loss, skipped, self.run, longest, int(tokens), int(flops), int(extra), stop > 0)
        self._steps.clear()
        self.tokens, self.flops, self.extra_micro_batches = 0, 0, 0
        return out
