"""What ``train.activation_checkpointing`` saves: the bytes autograd keeps for the backward pass of one training
micro-batch (distinct storages of the tensors saved by the forward pass), with and without checkpointing, per size
of the throughput benchmark. Deterministic (no timing), so it runs anywhere:

    python -m benchmarks.throughput.activation_memory --sizes bench tiny 100m gpt-base --out RESULT.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks import command
from benchmarks.throughput.run import BASE, SIZES, size_overrides

ROOT = Path(__file__).resolve().parents[2]


def saved_bytes(model, batch: dict, layer_map: list[int]) -> int:
    import torch

    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(batch, layer_map).loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def measure(size: str) -> dict:
    import torch

    from megagrow.config import load_config
    from megagrow.data.factory import build_data
    from megagrow.data.loader import GlobalBatchLoader
    from megagrow.models import build_model

    cfg = load_config(str(BASE), size_overrides(size, None, "fp32"))
    torch.manual_seed(cfg.run.seed)
    data = build_data(cfg.data, cfg.model, cfg.run.seed)
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = data.vocab_size
    model = build_model(cfg.model).train()
    batch = GlobalBatchLoader(data.train, cfg.data.micro_batch_size, 1, 0, cfg.run.seed).next_micro_batch()
    layer_map = model.full_layer_map()
    plain = saved_bytes(model, batch, layer_map)
    model.activation_checkpointing = True
    ckpt = saved_bytes(model, batch, layer_map)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"size": size, "note": SIZES[size].note, "tokens_per_micro_batch": cfg.data.micro_batch_size * data.seq_len,
            "saved_bytes": plain, "saved_bytes_checkpointed": ckpt, "ratio": ckpt / plain,
            "parameter_bytes": params}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput.activation_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["bench", "tiny", "100m"], choices=sorted(SIZES))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "activation-memory-cpu.json"))
    a = p.parse_args()
    rows = []
    for size in a.sizes:
        r = measure(size)
        rows.append(r)
        print(f"{size:>9}: {r['saved_bytes'] / 2**20:8.1f} MiB kept for backward, checkpointed "
              f"{r['saved_bytes_checkpointed'] / 2**20:8.1f} MiB ({r['ratio']:.3f}x); parameters "
              f"{r['parameter_bytes'] / 2**20:.1f} MiB", flush=True)
    out = Path(a.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"command": command("benchmarks.throughput.activation_memory"), "fp32": True,
                               "threads": os.environ.get("OMP_NUM_THREADS"), "sizes": rows}, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
