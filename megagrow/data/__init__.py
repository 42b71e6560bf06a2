"""Data: token corpora, the virtual token stream, sample datasets and the global-order loader.

Exports are resolved lazily (PEP 562) so that importing a light submodule such as
``megagrow.data.shards`` or ``megagrow.data.manifest`` (as ``megagrow-prep`` does) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BERTDataset": "megagrow.data.datasets",
    "BERTPairDataset": "megagrow.data.bert_pairs",
    "EvalLoader": "megagrow.data.loader",
    "GPTDataset": "megagrow.data.datasets",
    "GlobalBatchLoader": "megagrow.data.loader",
    "IGNORE_INDEX": "megagrow.data.masking",
    "InMemoryCorpus": "megagrow.data.corpus",
    "Masker": "megagrow.data.masking",
    "MaskingConfig": "megagrow.data.masking",
    "PairLayout": "megagrow.data.bert_pairs",
    "SampleDataset": "megagrow.data.datasets",
    "SpecialTokens": "megagrow.data.corpus",
    "SyntheticImageDataset": "megagrow.data.datasets",
    "TokenCorpus": "megagrow.data.corpus",
    "TokenStream": "megagrow.data.stream",
    "build_pair_layout": "megagrow.data.bert_pairs",
    "collate": "megagrow.data.loader",
    "sample_key": "megagrow.data.loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
