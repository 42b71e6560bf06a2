"""Build the train/validation datasets a config asks for."""

from __future__ import annotations

from dataclasses import dataclass

from megagrow.data.datasets import BERTDataset, GPTDataset, SampleDataset, SyntheticImageDataset
from megagrow.flops import deit_seq_len
from megagrow.models.spec import ModelConfig

# Synthetic validation images are drawn from the same class prototypes with keys far from training's.
_VAL_KEY_OFFSET = 1 << 40


@dataclass
class DataBundle:
    train: SampleDataset
    validation: SampleDataset
    vocab_size: int  # 0 for images
    seq_len: int  # tokens per sample entering the transformer blocks
    eval_key_offset: int = 0


def build_data(data_cfg, model_cfg: ModelConfig, seed: int) -> DataBundle:
    """``data_cfg`` is a :class:`megagrow.config.DataConfig`."""
    from megagrow.config import expand_path

    if data_cfg.kind == "synthetic-images":
        m = model_cfg
        common = dict(num_classes=m.num_classes, image_size=m.image_size, in_chans=m.in_chans, seed=seed)
        return DataBundle(
            train=SyntheticImageDataset(n_samples=data_cfg.synthetic_train_samples, **common),
            validation=SyntheticImageDataset(n_samples=max(data_cfg.eval_samples, 1), **common),
            vocab_size=0,
            seq_len=deit_seq_len(m.image_size, m.patch_size, m.n_prefix_tokens),
            eval_key_offset=_VAL_KEY_OFFSET,
        )
    from megagrow.data.shards import ShardedCorpus

    path = expand_path(data_cfg.path)
    train_c, val_c = ShardedCorpus.open(path, "train"), ShardedCorpus.open(path, "validation")
    if model_cfg.family == "gpt":
        train: SampleDataset = GPTDataset(train_c, data_cfg.seq_len)
        val: SampleDataset = GPTDataset(val_c, data_cfg.seq_len)
    else:
        train = BERTDataset(train_c, data_cfg.seq_len, mask_prob=data_cfg.mask_prob, seed=seed)
        val = BERTDataset(val_c, data_cfg.seq_len, mask_prob=data_cfg.mask_prob, seed=seed)
    return DataBundle(train=train, validation=val, vocab_size=train_c.vocab_size, seq_len=data_cfg.seq_len)
