"""The memory, network and time model of a streamed transition, computed from the real operators traced at any
size (docs/distributed.md, "Streamed transitions on paper").

Nothing is allocated: each plan's operator is traced (:mod:`megagrow.growth.trace`) on symbolic tensors of the
model's real parameter shapes, which gives, for every new tensor, the exact source tensors it reads and whether it
is elementwise (computed from each rank's own partitions) or gathered to one owner rank (round-robin, as
:mod:`megagrow.distributed.streamed` does). From that, per rank (the busiest rank where they differ):

* **memory**: the old state's partitions kept for the stream (``12 Ψ / W`` bytes with AdamW; spilled to local disk
  by default), and above the larger model's training state, the largest group of whole source tensors one new
  tensor needs plus the tensor itself (on its owner);
* **network**: bytes received (the sources of the tensors it owns, (W-1)/W of each, and its partition of every
  gathered tensor);
* **time** at stated bandwidths: partitions out of the engine and back in (host copy), the spill written and read
  back, the network bytes, and the replay (bytes of sources the rank processes, at a host throughput).

    python -m benchmarks.transition_model                     # the 70B paper model on 64 GPUs
    python -m benchmarks.transition_model --check benchmarks/results/transition-streamed-cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from megagrow.config import load_config
from megagrow.growth.plans import Plan
from megagrow.growth.trace import Shard, Sym, Trace, partition_size, symbolic_state, trace
from megagrow.models import build_model

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9
# the paper model: GPT (pre-LN, MHA, 4d FFN, tied embeddings) of Llama-2-70B's depth and width, 64.7B parameters
PAPER = ["--model.size=gpt-base", "--model.vocab_size=32000", "--model.n_layers=80", "--model.hidden=8192",
         "--model.n_heads=64", "--model.ffn=32768", "--model.max_seq_len=4096"]


@dataclass(frozen=True)
class Bandwidths:
    """Bytes per second per rank."""

    host_copy: float  # partitions out of the old engine and into the new one (device <-> host; memcpy on a CPU)
    spill: float  # writing the old partitions to local disk (page cache) and reading them back
    network: float  # receiving gathered bytes (per rank, all-to-one / one-to-all)
    replay: float  # source bytes the host replay processes per second (index ops, arithmetic)


# an H100 node: PCIe Gen5 x16 per GPU, local NVMe, one 400 Gb/s NIC per GPU, host memory bandwidth per rank
CLUSTER = Bandwidths(host_copy=25 * GB, spill=3 * GB, network=45 * GB, replay=5 * GB)


@dataclass
class Cost:
    """One transition on one (busiest) rank."""

    name: str
    params_before: int
    params_after: int
    world: int
    tensors: int
    local_tensors: int
    old_partition_bytes: int  # kept for the stream (spilled)
    new_partition_bytes: int  # written into the new engine
    largest_group_bytes: int  # source bytes one new tensor needs on a rank (whole on its owner, else partitions)
    largest_output_bytes: int  # a whole new tensor on its owner (a partition for an elementwise one)
    network_in_bytes: int  # received by the busiest rank
    replay_bytes: int  # source bytes the busiest rank replays (local partitions + the groups it owns)
    seconds: dict[str, float]

    @property
    def extra_peak_bytes(self) -> int:
        """Above the larger model's training state (with the old partitions spilled)."""
        return self.largest_group_bytes + self.largest_output_bytes


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * 4  # fp32 state


def cost(t: Trace, name: str, params_before: int, world: int, bw: Bandwidths) -> Cost:
    """The streamed executor's bookkeeping over a traced transition, without running it."""
    assert t.result is not None
    net = [0] * world
    replay = [0] * world
    group_max = out_max = 0
    tensors = local = 0
    new_parts = 0
    owner_index = 0
    for _table, _name, sym in t.outputs():
        tensors += 1
        part = partition_size(sym.numel(), world)
        new_parts += part * 4
        keys = t.sources(sym)
        plan = t.local_plan(sym) if isinstance(sym, Sym) else None
        if plan is not None and all(tuple(t.leaves[k].shape) == tuple(sym.shape) for k in plan.sources):
            local += 1  # this rank's partitions of its sources, and its partition of the result
            group_max, out_max = max(group_max, part * 4 * len(plan.sources)), max(out_max, part * 4)
            for r in range(world):
                replay[r] += part * 4 * len(plan.sources)
            continue
        owner = owner_index % world
        owner_index += 1
        group = sum(_nbytes(t.leaves[k]) for k in keys)
        group_max, out_max = max(group_max, group), max(out_max, _nbytes(sym))
        net[owner] += group * (world - 1) // world  # the other ranks' partitions of its sources
        replay[owner] += group
        for r in range(world):
            if r != owner:
                net[r] += part * 4  # its partition of the result
    params_after = sum(s.numel() for s in t.result.params.values())
    old_parts = sum(partition_size(leaf.numel(), world) * 4 for key, leaf in t.leaves.items() if key[0] != "shard")
    seconds = {
        "host_copy": (old_parts + new_parts) / bw.host_copy,
        "spill": 2 * old_parts / bw.spill,
        "network": max(net) / bw.network,
        "replay": max(replay) / bw.replay,
    }
    seconds["total"] = sum(seconds.values())
    return Cost(name, params_before, params_after, world, tensors, local, old_parts, new_parts, group_max, out_max,
                max(net), max(replay), seconds)


def _shapes(cfg: Any, arch: dict[str, int]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_model(replace(cfg.model, **arch))
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def chain_costs(model_args: list[str], world: int, bw: Bandwidths, moments: bool = True) -> list[Cost]:
    """The benchmark's chain at this size (benchmarks/transition_cost.py): Apollo N/2 -> N, then Multi-Level's
    coalescing and de-coalescing + interpolation, each traced on the real plan's operator."""
    from benchmarks.transition_cost import APOLLO_STEP, COARSEN_STEP, REFINE_STEP, plans

    cfg = load_config(None, [*model_args, "--train.max_steps=10", "--distributed.zero_stage=3"])
    apollo, multilevel = plans(cfg)
    out = []
    for plan, step in ((apollo, APOLLO_STEP), (multilevel, COARSEN_STEP), (multilevel, REFINE_STEP)):
        out.append(_traced_cost(plan, step, cfg, world, bw, moments))
    return out


def _traced_cost(plan: Plan, step: int, cfg: Any, world: int, bw: Bandwidths, moments: bool) -> Cost:
    tr = plan.transition(step)
    assert tr is not None
    shapes = _shapes(cfg, plan.arch_at(step - 1))
    steps = dict.fromkeys(shapes, step if moments else 0)
    t = trace(tr.operator, lambda tt: symbolic_state(tt, shapes, moments, steps))
    kept = plan.state_tensors()  # a snapshot the plan keeps (symbolic): partitions, as the executor keeps them
    plan.load_state_tensors({k: Shard(torch.empty(partition_size(v.numel(), world), device="meta"), tuple(v.shape),
                                      0, world) if isinstance(v, Sym) else v for k, v in kept.items()})
    return cost(t, tr.name, sum(math.prod(s) for s in shapes.values()), world, bw)


def _row(c: Cost) -> str:
    s = c.seconds
    return (f"{c.name[:40]:<40} {c.params_before / 1e9:7.2f}->{c.params_after / 1e9:<6.2f}B W={c.world:<3} "
            f"local {c.local_tensors:>4}/{c.tensors:<4} old parts {c.old_partition_bytes / GB:6.2f} GB  "
            f"extra {c.extra_peak_bytes / GB:6.2f} GB (group {c.largest_group_bytes / GB:5.2f})  "
            f"net in {c.network_in_bytes / GB:6.2f} GB  {s['total']:6.1f} s (copy {s['host_copy']:.1f} "
            f"spill {s['spill']:.1f} net {s['network']:.1f} replay {s['replay']:.1f})")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.transition_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=int, default=64)
    p.add_argument("--check", type=Path, help="a transition_cost result: model its sizes and world, print both")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/transition-model-70b.json")
    args = p.parse_args()
    if args.check:
        check(args.check)
        return
    costs = chain_costs(PAPER, args.world, CLUSTER)
    for c in costs:
        print(_row(c))
    result = {"benchmark": "transition_model", "model": PAPER, "world": args.world, "bandwidths": asdict(CLUSTER),
              "transitions": [{**asdict(c), "extra_peak_bytes": c.extra_peak_bytes} for c in costs]}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


def check(path: Path) -> None:
    """The model's predictions next to a measured transition_cost result (its sizes, world and streamed rows)."""
    from benchmarks.transition_cost import MODELS

    measured = json.loads(path.read_text())
    world = measured["machine"]["ranks"]
    rows = [r for r in measured["rows"] if r["zero"].startswith("z3-streamed")]
    for model in dict.fromkeys(r["model"] for r in rows):
        costs = chain_costs(MODELS[model], world, CLUSTER)
        for c, r in zip(costs, [r for r in rows if r["model"] == model], strict=False):
            over = max(p - s for p, s in zip(r["peak_rss_transition_mb"], r["peak_rss_steady_mb"], strict=True))
            print(f"{model:<9} {c.name[:34]:<34} predicted group+output {c.extra_peak_bytes / 2**20:8.0f} MB "
                  f"(group {c.largest_group_bytes / 2**20:6.0f}); measured group "
                  f"{max(r['largest_source_group_mb']):6.0f} MB, peak over steady {over:7.0f} MB")


if __name__ == "__main__":
    main()
