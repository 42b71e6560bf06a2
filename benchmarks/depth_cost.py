"""Does wall time follow FLOPs when a model runs fewer layers than it holds?

Growth plans (Apollo's sampled depth, a coalesced phase) run a layer map shorter than the K slots the
model holds. This benchmark times one optimizer step of a K-slot model executing the first d slots,
next to a model that holds only d slots, side by side in one process (interleaved rounds, medians),
and splits the step into forward+backward and the DeepSpeed ``step()`` (clipping + AdamW). The gap
between the two is the cost of slots that are not live: today every slot is still stepped by AdamW
(DeepSpeed hands unused parameters zero gradients, not None), which the growth issues must remove.

    python -m benchmarks.depth_cost --out benchmarks/results/depth-cost-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from benchmarks import command  # noqa: E402
from megagrow.config import load_config  # noqa: E402
from megagrow.distributed.engine import build_engine, destroy_engine, init_distributed  # noqa: E402
from megagrow.flops import train_flops  # noqa: E402
from megagrow.models import build_model  # noqa: E402


def _engine(n_slots: int, args: argparse.Namespace):
    cfg = load_config(None, [f"--model.size={args.size}", f"--model.n_layers={n_slots}",
                             f"--model.vocab_size={args.vocab}", f"--data.seq_len={args.seq_len}",
                             f"--data.micro_batch_size={args.batch}", f"--distributed.zero_stage={args.zero}"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    return build_engine(model, cfg, world_size=1), model


def _time_step(engine, batch, layer_map) -> tuple[float, float]:
    t0 = time.perf_counter()
    out = engine(batch, layer_map)
    engine.backward(out.loss)
    t1 = time.perf_counter()
    engine.step()
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.depth_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="gpt-tiny")
    p.add_argument("--slots", type=int, default=12, help="K, slots the large model holds")
    p.add_argument("--depths", default="1,3,6,12")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--zero", type=int, default=0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=4, help="timed steps per engine per round (after 1 warm-up)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/depth-cost-cpu.json")
    args = p.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    cfg0 = load_config(None, [f"--model.size={args.size}"])
    init_distributed(cfg0)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1), generator=gen)
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}

    big, big_model = _engine(args.slots, args)
    smalls = {d: _engine(d, args) for d in depths if d < args.slots}
    times: dict[str, dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for d in depths:  # interleaved: every configuration sees the same machine noise
            runs = [(f"K={args.slots} map[:{d}]", big, list(range(d)))]
            if d in smalls:
                runs.append((f"K={d}", smalls[d][0], list(range(d))))
            for name, eng, lmap in runs:
                _time_step(eng, batch, lmap)
                for _ in range(args.steps):
                    fb, st = _time_step(eng, batch, lmap)
                    t = times.setdefault(name, {"fwd_bwd": [], "step": []})
                    t["fwd_bwd"].append(fb)
                    t["step"].append(st)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    arch = big_model.arch()
    rows = []
    for d in depths:
        flops = train_flops(arch, d, args.batch, args.seq_len, args.batch * args.seq_len)
        for name in (f"K={args.slots} map[:{d}]", f"K={d}"):
            if name not in times or (name == f"K={d}" and d == args.slots):
                continue
            fb, st = statistics.median(times[name]["fwd_bwd"]), statistics.median(times[name]["step"])
            rows.append({"config": name, "depth": d, "slots": args.slots if "map" in name else d,
                         "train_flops": flops, "fwd_bwd_s": fb, "optimizer_step_s": st, "total_s": fb + st})
    full = next(r for r in rows if r["config"] == f"K={args.slots} map[:{args.slots}]")
    for r in rows:
        r["flops_ratio"] = r["train_flops"] / full["train_flops"]
        r["time_ratio"] = r["total_s"] / full["total_s"]
    for e in [big, *(e for e, _ in smalls.values())]:
        destroy_engine(e)
    result = {
        "benchmark": "depth_cost",
        "command": command("benchmarks.depth_cost"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"{'config':<18} {'FLOPs ratio':>11} {'time ratio':>10} {'fwd+bwd s':>10} {'opt step s':>10}")
    for r in rows:
        print(f"{r['config']:<18} {r['flops_ratio']:>11.3f} {r['time_ratio']:>10.3f} {r['fwd_bwd_s']:>10.4f} "
              f"{r['optimizer_step_s']:>10.4f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
