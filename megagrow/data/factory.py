"""Build the train/validation datasets a config asks for.

There is no validation dataset (``DataBundle.validation`` is None) when ``data.eval_samples`` is 0 or
the prepared dataset has no validation split (built with ``--val-fraction 0``): training then runs
without evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

from megagrow.data.bert_pairs import BERTPairDataset
from megagrow.data.datasets import BERTDataset, GPTDataset, SampleDataset, SyntheticImageDataset
from megagrow.data.integrity import ShardVerifier, corpus_files
from megagrow.data.masking import MaskingConfig
from megagrow.flops import deit_seq_len
from megagrow.models.spec import ModelConfig

# Synthetic validation images are drawn from the same class prototypes with keys far from training's.
_VAL_KEY_OFFSET = 1 << 40


@dataclass
class DataBundle:
    train: SampleDataset
    validation: SampleDataset | None  # None: no evaluation (data.eval_samples 0, or no validation split)
    vocab_size: int  # 0 for images
    seq_len: int  # tokens per sample entering the transformer blocks
    eval_key_offset: int = 0
    verifier: ShardVerifier | None = None  # data.verify: the shards' hashes checked in the background
    tokenizer_sha256: str | None = None  # text datasets: the SentencePiece model's hash (tokenizer identity)


def build_data(data_cfg, model_cfg: ModelConfig, seed: int) -> DataBundle:
    """``data_cfg`` is a :class:`megagrow.config.DataConfig`."""
    from megagrow.config import expand_path

    if data_cfg.kind == "synthetic-images":
        m = model_cfg
        common = dict(num_classes=m.num_classes, image_size=m.image_size, in_chans=m.in_chans, seed=seed)
        return DataBundle(
            train=SyntheticImageDataset(n_samples=data_cfg.synthetic_train_samples, **common),
            validation=SyntheticImageDataset(n_samples=data_cfg.eval_samples, **common) if data_cfg.eval_samples
            else None,
            vocab_size=0,
            seq_len=deit_seq_len(m.image_size, m.patch_size, m.n_prefix_tokens),
            eval_key_offset=_VAL_KEY_OFFSET,
        )
    path = expand_path(data_cfg.path)
    if data_cfg.kind == "images":
        from megagrow.data.images import ImageDataset, ImageShards

        m = model_cfg
        tr = ImageShards.open(path, "train")
        va = ImageShards.open(path, "validation") if _evaluates(data_cfg, tr.manifest) else None
        if tr.num_classes != m.num_classes:
            raise ValueError(f"data.path={path}: {tr.num_classes} classes, but model.num_classes={m.num_classes}")
        return DataBundle(
            train=ImageDataset(tr, m.image_size, m.in_chans, train=True, seed=seed, augment=data_cfg.augment,
                               scale=(data_cfg.augment_scale_min, 1.0), hflip=data_cfg.hflip),
            validation=ImageDataset(va, m.image_size, m.in_chans, train=False, seed=seed) if va else None,
            vocab_size=0,
            seq_len=deit_seq_len(m.image_size, m.patch_size, m.n_prefix_tokens),
        )
    from megagrow.data.shards import ShardedCorpus

    train_c = ShardedCorpus.open(path, "train")
    val_c = ShardedCorpus.open(path, "validation") if _evaluates(data_cfg, train_c.manifest) else None

    def dataset(c: ShardedCorpus) -> SampleDataset:
        if model_cfg.family == "gpt":
            return GPTDataset(c, data_cfg.seq_len)
        if data_cfg.bert_pairs:
            masking = MaskingConfig(mask_prob=data_cfg.mask_prob, whole_word=data_cfg.whole_word_masking)
            return BERTPairDataset(c, data_cfg.seq_len, masking=masking, short_seq_prob=data_cfg.short_seq_prob,
                                   nsp=data_cfg.nsp, seed=seed)
        return BERTDataset(c, data_cfg.seq_len, mask_prob=data_cfg.mask_prob, seed=seed,
                           whole_word=data_cfg.whole_word_masking)

    verifier = None
    if data_cfg.verify == "background":
        files = corpus_files(train_c) + (corpus_files(val_c)[:-1] if val_c is not None else [])  # one tokenizer
        verifier = ShardVerifier(path, files)
    return DataBundle(train=dataset(train_c), validation=dataset(val_c) if val_c is not None else None,
                      vocab_size=train_c.vocab_size, seq_len=data_cfg.seq_len, verifier=verifier,
                      tokenizer_sha256=train_c.tokenizer_sha256)


def _evaluates(data_cfg, manifest: dict) -> bool:
    """Whether to open the validation split: evaluation is on and the dataset has one."""
    return data_cfg.eval_samples > 0 and "validation" in manifest.get("splits", {})
