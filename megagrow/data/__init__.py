"""Data: token corpora, the virtual token stream, sample datasets and the global-order loader."""

from megagrow.data.corpus import InMemoryCorpus, SpecialTokens, TokenCorpus
from megagrow.data.datasets import IGNORE_INDEX, BERTDataset, GPTDataset, SampleDataset, SyntheticImageDataset
from megagrow.data.loader import EvalLoader, GlobalBatchLoader, collate
from megagrow.data.stream import TokenStream

__all__ = [
    "IGNORE_INDEX",
    "BERTDataset",
    "EvalLoader",
    "GPTDataset",
    "GlobalBatchLoader",
    "InMemoryCorpus",
    "SampleDataset",
    "SpecialTokens",
    "SyntheticImageDataset",
    "TokenCorpus",
    "TokenStream",
    "collate",
]
