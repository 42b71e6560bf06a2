"""``megagrow export CHECKPOINT --to hf OUT``: a checkpoint, at its step's architecture, as a Hugging Face model.

Writes ``config.json`` and ``model.safetensors`` (:func:`megagrow.interchange.hf.to_hf` along the layer map in
effect, so an Apollo checkpoint with N live slots exports the target depth, layer i a copy of slot map[i]),
``megagrow_export.json`` (where it came from), and for text models the run's tokenizer: ``tokenizer.model`` (the
SentencePiece model the data was tokenized with, byte for byte), ``tokenizer_config.json`` and
``special_tokens_map.json`` for ``transformers``' ``LlamaTokenizer`` (a plain SentencePiece wrapper: ``encode``
gives the ids megagrow trained on; BERT's adds ``[CLS] ... [SEP]`` as megagrow's samples have them). Load it with
``AutoTokenizer.from_pretrained(OUT, use_fast=False)``: the fast converter changes how the first word splits.
DeiT exports name their classes after the image dataset's ``class_names`` when it is at hand (else ``LABEL_i``);
no image processor config is written (megagrow's images are normalized by its data pipeline, not the model).

MSG checkpoints inside the mask ramp are refused: there the grown units are scaled by a mask value 0 < c < 1
(LayerNorm statistics weighted, heads, FFN units and new layers scaled), which no plain Hugging Face model
computes; before the growth step the checkpoint is the plain small model, after the ramp the plain target.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from megagrow.checkpointing.model import CheckpointModel, open_checkpoint
from megagrow.config import Config, expand_path
from megagrow.data.manifest import sha256_file
from megagrow.data.tokenizer_identity import checkpoint_tokenizer, mismatch
from megagrow.interchange.hf import hf_kind, to_hf
from megagrow.interchange.hf_io import write_hf_dir

TOKENIZER_FILE = "tokenizer.model"
PIECES = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]", "eos": "[EOS]"}


def run_tokenizer(cfg: Config, override: Path | str | None = None) -> tuple[Path, dict[str, int]]:
    """The run's SentencePiece model and special-token ids (``override``: another model file, same ids).
    FileNotFoundError naming ``data.path`` when the run's dataset is not where its config says."""
    from megagrow.data.shards import ShardedCorpus

    data = expand_path(cfg.data.path)
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"--tokenizer {path}: no such file")
        if (data / "manifest.json").is_file():
            return path, ShardedCorpus.open(data, "train").special.as_dict()
        from megagrow.data.tokenizer import read_tokenizer  # megagrow-prep's fixed ids, read from the model itself

        return path, read_tokenizer(path).special.as_dict()
    if not (data / "manifest.json").is_file():
        raise FileNotFoundError(f"the run's dataset data.path={cfg.data.path} ({data}) has no manifest.json, so its "
                                "tokenizer cannot be found; pass --tokenizer TOKENIZER.model")
    corpus = ShardedCorpus.open(data, "train")
    return corpus.tokenizer_path, corpus.special.as_dict()


def tokenizer_files(family: str, model_file: Path, max_len: int) -> dict[str, bytes | str]:
    """``tokenizer.model`` plus the two JSON files ``transformers`` reads (see the module docstring)."""
    bert = family == "bert"
    tokens = {"unk_token": PIECES["unk"], "pad_token": PIECES["pad"], "eos_token": PIECES["sep" if bert else "eos"]}
    if bert:
        tokens.update(bos_token=PIECES["cls"], cls_token=PIECES["cls"], sep_token=PIECES["sep"],
                      mask_token=PIECES["mask"])
    config = {"tokenizer_class": "LlamaTokenizer", **tokens, "add_bos_token": bert, "add_eos_token": bert,
              "legacy": True, "add_prefix_space": None, "clean_up_tokenization_spaces": False,
              "model_max_length": max_len, "sp_model_kwargs": {}}
    if not bert:
        config["bos_token"] = None
    dump = lambda d: json.dumps(d, indent=2, sort_keys=True) + "\n"  # noqa: E731
    return {TOKENIZER_FILE: model_file.read_bytes(), "tokenizer_config.json": dump(config),
            "special_tokens_map.json": dump(tokens)}


def class_names(cfg: Config) -> list[str] | None:
    """deit on a prepared image dataset: its class names (config.json ``id2label``); None otherwise (``LABEL_i``)."""
    if cfg.model.family != "deit" or cfg.data.kind != "images":
        return None
    from megagrow.data.images import ImageShards

    try:
        names = ImageShards.open(expand_path(cfg.data.path), "train").class_names
    except (OSError, ValueError):
        return None  # the dataset has moved: generic labels
    return names if len(names) == cfg.model.num_classes else None


class ExportRefused(ValueError):
    """The checkpoint's model cannot be written as a plain Hugging Face model."""


def _refuse_masks(cm: CheckpointModel) -> None:
    if cm.masks is None:
        return
    g = cm.config.growth
    layers = cm.masks.layers or ()
    c = min(layers) if layers else float("nan")
    raise ExportRefused(
        f"{cm.path}: step {cm.step} is inside the {g.plan} mask ramp (mask value c={c:g} on the grown units): the "
        "masked model weights LayerNorm statistics and scales the new heads, FFN units and layers by c, which no "
        "plain Hugging Face architecture computes, and it is not a smaller model either. Export a checkpoint from "
        "before the growth step (the small model) or from the end of the ramp on (the plain target model); "
        "`megagrow eval` evaluates this one as trained.")


def export_hf(checkpoint: Path | str, out: Path | str, tokenizer: Path | str | None = None,
              overwrite: bool = False) -> tuple[Path, CheckpointModel]:
    """Write the Hugging Face directory ``out`` for ``checkpoint`` (a checkpoint or run directory)."""
    cm = open_checkpoint(checkpoint)
    _refuse_masks(cm)
    m = cm.model_cfg
    files: dict[str, bytes | str] = {}
    token_ids = None
    tokenizer_sha = None
    if m.family in ("bert", "gpt"):
        model_file, token_ids = run_tokenizer(cm.config, tokenizer)
        files.update(tokenizer_files(m.family, model_file, m.max_seq_len))
        tokenizer_sha = sha256_file(model_file)
        trained = checkpoint_tokenizer(cm.meta)
        if trained is not None and trained != tokenizer_sha:
            raise ExportRefused(mismatch(str(cm.path), trained, f"--tokenizer {model_file}", tokenizer_sha))
    config, tensors = to_hf(cm.params, m, cm.layer_map, token_ids=token_ids, labels=class_names(cm.config))
    provenance: dict[str, Any] = {"checkpoint": str(Path(cm.path).resolve()), "step": cm.step, "phase": cm.phase,
                                  "layer_map": list(cm.layer_map), "slots": m.n_layers, "architecture": hf_kind(m),
                                  "model": asdict(m), "plan": cm.config.growth.plan,
                                  "tokenizer_sha256": tokenizer_sha}
    files["megagrow_export.json"] = json.dumps(provenance, indent=2, sort_keys=True) + "\n"
    return write_hf_dir(out, config, tensors, files, overwrite=overwrite), cm


__all__ = ["ExportRefused", "export_hf", "run_tokenizer", "tokenizer_files"]
