"""Side-by-side summary of runs from their ``metrics.jsonl`` (the stable metrics interface)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunSummary:
    name: str
    plan: str
    steps: int
    tokens: int
    flops: int
    wall_s: float
    final_loss: float
    final_val_loss: float | None
    best_val_loss: float | None


def summarize(run_dir: Path) -> RunSummary:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl (is this a megagrow run directory?)")
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not recs:
        raise ValueError(f"{path}: no records yet")
    vals = [r["val_loss"] for r in recs if "val_loss" in r]
    last = recs[-1]
    plan = _plan_name(run_dir)
    return RunSummary(run_dir.name, plan, last["step"], last["tokens"], last["flops"], last["wall_s"], last["loss"],
                      vals[-1] if vals else None, min(vals) if vals else None)


def _plan_name(run_dir: Path) -> str:
    cfg = run_dir / "config.yaml"
    if cfg.is_file():
        import yaml

        return (yaml.safe_load(cfg.read_text()).get("growth") or {}).get("plan", "?")
    return "?"


def format_table(runs: list[RunSummary]) -> str:
    """One row per run; FLOPs and wall time also relative to the first run (the baseline)."""
    base = runs[0]
    head = f"{'run':<24} {'plan':<11} {'steps':>6} {'tokens':>11} {'PFLOP':>8} {'vs base':>8} {'wall s':>8} " \
           f"{'vs base':>8} {'loss':>7} {'val_loss':>8}"
    rows = [head, "-" * len(head)]
    for r in runs:
        val = f"{r.final_val_loss:.4f}" if r.final_val_loss is not None else "n/a"
        rows.append(f"{r.name:<24} {r.plan:<11} {r.steps:>6} {r.tokens:>11,} {r.flops / 1e15:>8.3f} "
                    f"{r.flops / base.flops:>8.3f} {r.wall_s:>8.1f} {r.wall_s / base.wall_s:>8.3f} "
                    f"{r.final_loss:>7.4f} {val:>8}")
    return "\n".join(rows)
