"""Where an MLM checkpoint's loss comes from: its validation loss split by the kind of target position — replaced by
``[MASK]``, replaced by a random token, or left unchanged (BERT's 80/10/10) — with top-1 accuracy, against the
corpus's unigram entropy. A model that has learned context predicts ``[MASK]`` positions far below the unigram
entropy; one on MLM's early plateau sits at it and gains only by copying the unchanged targets.

Also where the attention goes: per layer, the mean attention weight (over heads, queries and sequences) at key
offsets 0, +-1, +-2 from the query and the largest share any head puts within +-2 (a uniform head over 128
tokens puts 1/128 = 0.0078 at each offset, 5/128 = 0.039 within +-2; the model's own attention bias included),
and whether the position embeddings learned structure (mean cosine between the centered embeddings of positions
1 and 5 apart; ~0 for unstructured ones).

    python -m benchmarks.acceleration.mlm_probe runs/acceleration-bert/scratch-lr1e-3 [--samples 256]
    python -m benchmarks.acceleration.mlm_probe RUN... --out FILE.json   # also writes the probes to FILE.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from benchmarks import command


def unigram_entropy(corpus, docs: int = 200) -> float:
    import numpy as np

    counts = np.zeros(corpus.vocab_size)
    for i in range(0, corpus.n_docs, max(1, corpus.n_docs // docs)):
        np.add.at(counts, np.asarray(corpus.doc(i)), 1)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def attention_by_offset(model, batch: dict, layer_map) -> list[dict]:
    """Per executed layer: mean attention weight at key offsets -2..2 and the largest share of any head within
    +-2, recomputed from each block's input with the same mask/bias the block got."""
    import torch

    seen: list[torch.Tensor] = []

    def hook(mod, args, kwargs):
        x = args[0]
        mask = args[1] if len(args) > 1 else kwargs.get("attn_mask")
        b, t, d = x.shape
        q, k, _ = mod.qkv(x).view(b, t, 3, mod.n_heads, d // mod.n_heads).permute(2, 0, 3, 1, 4).unbind(0)
        logits = q @ k.transpose(-1, -2) / (d // mod.n_heads) ** 0.5
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
        seen.append(logits.softmax(-1).mean(0))  # [H, T, T]

    hooks = [blk.attn.register_forward_pre_hook(hook, with_kwargs=True) for blk in model.blocks]
    try:
        with torch.no_grad():
            model(batch, layer_map)
    finally:
        for h in hooks:
            h.remove()
    out = []
    for a in seen:
        at = {off: float(torch.diagonal(a, offset=off, dim1=-2, dim2=-1).mean()) for off in (-2, -1, 0, 1, 2)}
        near = sum(torch.diagonal(a, offset=off, dim1=-2, dim2=-1).mean(-1) for off in (-2, -1, 0, 1, 2))
        out.append({"offset": {str(k): v for k, v in at.items()}, "max_head_within_2": float(near.max())})
    return out


def probe(checkpoint: str, samples: int) -> dict:
    import torch
    import torch.nn.functional as F

    from megagrow.checkpointing.model import open_checkpoint
    from megagrow.config import expand_path
    from megagrow.data.factory import build_data
    from megagrow.data.loader import EvalLoader
    from megagrow.data.shards import ShardedCorpus

    cm = open_checkpoint(checkpoint)
    if cm.model_cfg.family != "bert":
        raise SystemExit(f"{checkpoint}: a {cm.model_cfg.family} checkpoint; the probe is for MLM (bert)")
    cfg = cm.config
    bundle = build_data(replace(cfg.data, eval_samples=samples), cfg.model, cfg.run.seed)
    corpus = ShardedCorpus.open(expand_path(cfg.data.path), "validation")
    mask_id = corpus.special.mask
    model = cm.build("cpu").eval()
    loader = EvalLoader(bundle.validation, cfg.data.micro_batch_size, samples, 1, 0, key_offset=bundle.eval_key_offset)
    sums = {k: [0.0, 0, 0] for k in ("mask", "random", "unchanged")}
    with torch.no_grad():
        for batch in loader:
            logits = model(batch, cm.layer_map, cm.masks).logits.float()
            sel = batch["labels"] != -100
            if logits.dim() == 3:
                logits = logits[sel]
            target, given = batch["labels"][sel], batch["input_ids"][sel]
            loss = F.cross_entropy(logits, target, reduction="none")
            hit = logits.argmax(-1) == target
            for kind, m in (("mask", given == mask_id), ("unchanged", given == target),
                            ("random", (given != mask_id) & (given != target))):
                sums[kind][0] += float(loss[m].sum())
                sums[kind][1] += int(m.sum())
                sums[kind][2] += int(hit[m].sum())
    attention = attention_by_offset(model, next(iter(EvalLoader(bundle.validation, cfg.data.micro_batch_size,
                                                                  samples, 1, 0, key_offset=bundle.eval_key_offset))),
                                    cm.layer_map)
    pos = model.embed.positions.weight.detach()
    pos = F.normalize(pos - pos.mean(0), dim=-1)
    cos = pos @ pos.T
    return {"checkpoint": str(cm.path), "step": cm.step, "samples": samples,
            "attn_local_bias": cm.model_cfg.attn_local_bias, "bert_pre_ln": cm.model_cfg.bert_pre_ln,
            "attention": attention,
            "position_cosine": {"offset_1": float(torch.diagonal(cos, 1).mean()),
                                "offset_5": float(torch.diagonal(cos, 5).mean())},
            "unigram_entropy": unigram_entropy(ShardedCorpus.open(expand_path(cfg.data.path), "train")),
            "positions": {k: {"n": n, "loss": s / max(n, 1), "top1": c / max(n, 1)} for k, (s, n, c) in sums.items()}}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.acceleration.mlm_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="+")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--out", type=Path, default=None, help="also write {command, probes} to this JSON file")
    a = p.parse_args()
    probes = []
    for c in a.checkpoint:
        probes.append(probe(c, a.samples))
        print(json.dumps(probes[-1]), flush=True)
    if a.out is not None:
        tmp = a.out.with_suffix(a.out.suffix + ".tmp")
        tmp.write_text(json.dumps({"command": command("benchmarks.acceleration.mlm_probe"), "probes": probes},
                                  indent=1) + "\n")
        tmp.replace(a.out)


if __name__ == "__main__":
    main()
