"""megagrow's own step where DeepSpeed's engine has nothing to do: ZeRO-0 on one rank, fp32 or bf16-autocast.

There DeepSpeed's engine partitions nothing, reduces nothing (megagrow turns its all-reduce off, see
:func:`~megagrow.distributed.engine.build_engine`) and does not own the optimizer step (torch AdamW steps the module
parameters; megagrow clips, :func:`~megagrow.trainer.faults.clip_owned`). What is left of it in the step is overhead:
per forward, the autocast and deep-compile context managers and the registration of backward hooks on the outputs;
per backward, a graph tracker, a hook on the loss and locks; per step, timers, counters and monitor checks — about
1 ms of host time a step (the ``micro`` probe of benchmarks/throughput), which a GPU waits for.

:class:`DirectStep` runs exactly the same arithmetic without it: the module under ``torch.autocast`` where the
engine would autocast, the loss divided by the accumulation steps before ``backward()``, and at the accumulation
boundary ``optimizer.step()`` then every gradient set to None (DeepSpeed's ZeRO-0 ``zero_grad``). Everything else
(``module``, ``optimizer``, the engine's accessors that state gathering, transitions and checkpoints use, ``destroy``)
is the DeepSpeed engine's, reached through attribute delegation. tests/test_direct_step.py checks that a run is
bit-identical with and without it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def direct_step_applies(zero_stage: int, world_size: int, precision: str) -> bool:
    """Whether :class:`DirectStep` replaces DeepSpeed's step: ZeRO-0, one rank, a precision megagrow steps itself."""
    return zero_stage == 0 and world_size == 1 and precision in ("fp32", "bf16-autocast")


def trainable_params(engine) -> list[torch.nn.Parameter]:
    """The engine's module's parameters that require a gradient, listed once per engine (walking the module tree
    every step cost ~0.3 ms of host time per walk on a 12-layer model; an engine's parameters never change: a
    transition builds a new engine)."""
    cached = engine.__dict__.get("_megagrow_trainable")
    if cached is None:
        cached = [p for p in engine.module.parameters() if p.requires_grad]
        engine.__dict__["_megagrow_trainable"] = cached
    return cached


class DirectStep:
    """A DeepSpeed engine (ZeRO-0, one rank, fp32 or bf16-autocast) whose forward, backward and step megagrow runs
    itself; every other attribute is the engine's."""

    def __init__(self, engine: Any, grad_accum: int, autocast_dtype: torch.dtype | None) -> None:
        self.engine = engine
        self.module = engine.module
        self.optimizer = engine.optimizer
        self.device = engine.device
        self.grad_accum = grad_accum
        self._device_type = torch.device(engine.device).type
        self._autocast_dtype = autocast_dtype
        self.micro_steps = 0  # micro-batches stepped, as DeepSpeed counts them (the boundary is every grad_accum-th)
        self.global_steps = 0  # optimizer steps taken
        self._params = list(self.module.parameters())
        self._pending = 1  # micro-batches the last backward stood for

    def __getattr__(self, name: str) -> Any:  # only for what this class does not define
        return getattr(self.__dict__["engine"], name)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device_type, dtype=self._autocast_dtype)

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        with self._autocast():
            return self.module(*inputs, **kwargs)

    forward = __call__

    def backward(self, loss: torch.Tensor, micro_batches: int = 1) -> torch.Tensor:
        """``(loss / grad_accum).backward()``: gradients averaged over the step's micro-batches, as DeepSpeed does.
        ``micro_batches`` > 1: ``loss`` is the mean over that many merged micro-batches (``train.phase_batching``),
        which weigh as many; the next :meth:`step` counts them all."""
        scaled = loss * (micro_batches / self.grad_accum) if micro_batches != 1 else (
            loss / self.grad_accum if self.grad_accum != 1 else loss)
        scaled.backward()
        self._pending = micro_batches
        return scaled

    def is_gradient_accumulation_boundary(self) -> bool:
        return (self.micro_steps + self._pending) % self.grad_accum == 0

    def step(self) -> None:
        """At the accumulation boundary the optimizer step, then every gradient set to None; else nothing."""
        if self.is_gradient_accumulation_boundary():
            self.optimizer.step()
            for p in self._params:
                p.grad = None
            self.global_steps += 1
        self.micro_steps += self._pending
        self._pending = 1

    def train(self, mode: bool = True) -> DirectStep:
        self.module.train(mode)
        return self

    def eval(self) -> DirectStep:
        return self.train(False)
