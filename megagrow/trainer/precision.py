"""``train.precision: auto``: the precision a run trains in, chosen from the device, and why.

Measured (benchmarks/throughput, docs/gpu.md): on a CUDA GPU with bf16 (Ampere and later) fp32
trains GPT-Base at 9 % MFU against 26-37 % for bf16 matmuls under ``torch.autocast`` with fp32 weights
(``bf16-autocast``); DeepSpeed's own ``bf16`` (bf16 weights, its unfused optimizer wrapper) ran at 0.53x a plain
autocast loop on one GPU and is a memory mode, never picked by ``auto``. On a CPU fp32 stays: bf16 slowed the
acceleration suites' small models to 0.45x (their narrow matmuls gain nothing and the casts cost). Pure: the
device facts are arguments, so the choice is testable without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("auto", "fp32", "bf16", "bf16-autocast")


@dataclass(frozen=True)
class DeviceFacts:
    """What the choice depends on: a CUDA device, its name and whether it computes in bf16."""

    cuda: bool
    bf16: bool = False
    name: str = ""

    @classmethod
    def probe(cls) -> DeviceFacts:
        """This process's device (the current CUDA device when there is one)."""
        import torch

        if not torch.cuda.is_available():
            return cls(cuda=False)
        return cls(cuda=True, bf16=bool(torch.cuda.is_bf16_supported()), name=torch.cuda.get_device_name())


@dataclass(frozen=True)
class Resolved:
    precision: str  # fp32 | bf16 | bf16-autocast: never auto
    tf32: bool  # allow TF32 for fp32 matmuls and convolutions (CUDA only)
    why: str  # one line for the run's first lines

    def line(self, requested: str) -> str:
        chosen = f"train.precision={self.precision}" + (" with TF32 matmuls" if self.tf32 else "")
        if requested == "auto":
            return f"[megagrow] precision: auto -> {chosen} ({self.why})"
        return f"[megagrow] precision: {chosen} ({self.why})"


def resolve_precision(requested: str, device: DeviceFacts) -> Resolved:
    """The precision ``requested`` (``train.precision``) means on ``device``."""
    if requested not in PRECISIONS:
        raise ValueError(f"train.precision={requested!r}: expected one of {', '.join(PRECISIONS)}")
    where = f"CUDA device {device.name}" if device.name else "CUDA device"
    if requested != "auto":
        tf32 = device.cuda and requested == "fp32"
        why = "as configured" + (f"; {where}: fp32 matmuls use TF32" if tf32 else "")
        if requested.startswith("bf16") and device.cuda and not device.bf16:
            raise ValueError(f"train.precision={requested}: the {where} has no bf16 support; use fp32 or auto")
        return Resolved(requested, tf32, why)
    if device.cuda and device.bf16:
        return Resolved("bf16-autocast", True,
                        f"{where} supports bf16: bf16 matmuls under torch.autocast, fp32 weights and AdamW")
    if device.cuda:
        return Resolved("fp32", True, f"{where} has no bf16 support: fp32 weights, TF32 matmuls")
    return Resolved("fp32", False, "no CUDA device: fp32 (bf16 on a CPU slows small models, see docs/usage.md, Speed)")


def concrete(precision: str) -> str:
    """``precision`` with ``auto`` resolved on this process's device (for code that may see an unresolved config;
    the trainer resolves ``train.precision`` once, at its start)."""
    return resolve_precision(precision, DeviceFacts.probe()).precision if precision == "auto" else precision


def apply_matmul_settings(resolved: Resolved) -> None:
    """Allow TF32 where ``resolved`` says so (process-wide torch flags; a no-op on a CPU)."""
    if not resolved.tf32:
        return
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
