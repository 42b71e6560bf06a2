"""Data: token corpora, the virtual token stream, sample datasets and the global-order loader."""

from megagrow.data.bert_pairs import BERTPairDataset, PairLayout, build_pair_layout
from megagrow.data.corpus import InMemoryCorpus, SpecialTokens, TokenCorpus
from megagrow.data.datasets import BERTDataset, GPTDataset, SampleDataset, SyntheticImageDataset
from megagrow.data.loader import EvalLoader, GlobalBatchLoader, collate, sample_key
from megagrow.data.masking import IGNORE_INDEX, Masker, MaskingConfig
from megagrow.data.stream import TokenStream

__all__ = [
    "IGNORE_INDEX",
    "BERTDataset",
    "BERTPairDataset",
    "EvalLoader",
    "GPTDataset",
    "GlobalBatchLoader",
    "InMemoryCorpus",
    "Masker",
    "MaskingConfig",
    "PairLayout",
    "SampleDataset",
    "SpecialTokens",
    "SyntheticImageDataset",
    "TokenCorpus",
    "TokenStream",
    "build_pair_layout",
    "collate",
    "sample_key",
]
