"""``model.init_from: hf:DIR``: a run's start weights from a local Hugging Face model directory.

The directory's architecture must be the plan's start model (what ``plan.arch_at(0)`` makes of ``model``): the
model itself for scratch, the small model for bert2bert/ligo/msg, the first stage for stacking plans. Any
difference is refused with one error listing every mismatched config field, missing or unexpected tensor and
wrong shape (:func:`megagrow.interchange.hf.from_hf`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from megagrow.data.tokenizer_identity import hf_dir_tokenizer, mismatch
from megagrow.interchange.hf import from_hf
from megagrow.interchange.hf_io import read_hf_dir
from megagrow.models.spec import INIT_HF, ModelConfig


def init_dir(init_from: str) -> Path:
    """The directory of ``model.init_from`` (``hf:DIR``; ``~``, env vars and ``${MEGAGROW_CACHE}`` expanded)."""
    from megagrow.config import expand_path

    if not init_from.startswith(INIT_HF):
        raise ValueError(f"model.init_from={init_from!r}: expected {INIT_HF}DIR")
    return expand_path(init_from[len(INIT_HF):].strip())


def init_params(init_from: str, expect: ModelConfig, tokenizer_sha256: str | None = None,
                data_what: str = "the run's dataset") -> dict[str, torch.Tensor]:
    """The megagrow parameters of ``expect`` read from ``model.init_from`` (errors name the field and the files).
    ``tokenizer_sha256``: the run's dataset's tokenizer; a directory whose tokenizer (its megagrow export record or
    its ``tokenizer.model``) differs is refused, naming both."""
    path = init_dir(init_from)
    theirs = hf_dir_tokenizer(path) if tokenizer_sha256 is not None and path.is_dir() else None
    if theirs is not None and theirs != tokenizer_sha256:
        raise ValueError(mismatch(f"model.init_from={init_from!r}", theirs, data_what, tokenizer_sha256))
    try:
        config, tensors = read_hf_dir(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"model.init_from={init_from!r}: {e}") from None
    return from_hf(tensors, config, expect, source=f"model.init_from={init_from!r} ({path})")


__all__ = ["init_dir", "init_params"]
