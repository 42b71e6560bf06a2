"""Where an MLM checkpoint's loss comes from: its validation loss split by the kind of target position — replaced by
``[MASK]``, replaced by a random token, or left unchanged (BERT's 80/10/10) — with top-1 accuracy, against the
corpus's unigram entropy. A model that has learned context predicts ``[MASK]`` positions far below the unigram
entropy; one on MLM's early plateau sits at it and gains only by copying the unchanged targets.

    python benchmarks/acceleration/mlm_probe.py runs/acceleration-bert/scratch-lr1e-3 [--samples 256]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def unigram_entropy(corpus, docs: int = 200) -> float:
    import numpy as np

    counts = np.zeros(corpus.vocab_size)
    for i in range(0, corpus.n_docs, max(1, corpus.n_docs // docs)):
        np.add.at(counts, np.asarray(corpus.doc(i)), 1)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def probe(checkpoint: str, samples: int) -> dict:
    import torch
    import torch.nn.functional as F

    from megagrow.checkpoint_model import open_checkpoint
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
    return {"checkpoint": str(cm.path), "step": cm.step, "samples": samples,
            "unigram_entropy": unigram_entropy(ShardedCorpus.open(expand_path(cfg.data.path), "train")),
            "positions": {k: {"n": n, "loss": s / max(n, 1), "top1": c / max(n, 1)} for k, (s, n, c) in sums.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="+")
    p.add_argument("--samples", type=int, default=256)
    a = p.parse_args()
    for c in a.checkpoint:
        print(json.dumps(probe(c, a.samples)))


if __name__ == "__main__":
    main()
