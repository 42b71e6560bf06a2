"""What checking every shard's hash while training costs (``data.verify: background`` against ``off``).

    python -m benchmarks.shard_verify_cost [--data DIR] [--rounds 3] [--steps 40]

Runs ``megagrow train`` on the throughput benchmark's base config (the suites' GPT, 16 x 128 tokens a step) over the
benchmark corpus's dataset, both settings in turn for ``--rounds`` rounds (each a fresh process), and reports per
setting the median of: the process's wall time to its first metrics record (set-up + the first ``log_every`` steps:
where a background hash competes with the start), the whole process's wall time and tokens/s over the steps after
the first record; plus the hashing alone (every file of the dataset, one thread) in MB/s. Writes
``benchmarks/results/shard-verify-cost-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import command

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "benchmarks" / "throughput" / "configs" / "gpt.yaml"


def one_run(data: Path, verify: str, steps: int, out_dir: Path, name: str) -> dict:
    cmd = [sys.executable, "-m", "megagrow.cli", "train", str(BASE), f"--data.path={data}", f"--data.verify={verify}",
           f"--train.max_steps={steps}", "--logging.log_every=10", f"--run.out_dir={out_dir}", f"--run.name={name}",
           "--checkpoint.resume=never"]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = out_dir / name / "metrics.jsonl"
    first = None
    while proc.poll() is None:
        if first is None and metrics.exists() and metrics.stat().st_size > 0:
            first = time.time() - t0
        time.sleep(0.01)
    total = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{verify}: exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
    recs = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    later = recs[1:]
    tokens = later[-1]["tokens"] - recs[0]["tokens"]
    wall = later[-1]["wall_s"] - recs[0]["wall_s"]
    return {"to_first_record_s": first, "process_s": total, "tokens_per_s": tokens / wall}


def hash_rate(data: Path) -> dict:
    from megagrow.data.integrity import ShardVerifier, corpus_files
    from megagrow.data.shards import ShardedCorpus

    files = corpus_files(ShardedCorpus.open(data, "train")) + corpus_files(ShardedCorpus.open(data, "validation"))[:-1]
    v = ShardVerifier(data, files)
    assert v.wait() is None, v.problem()
    size = sum(f.path.stat().st_size for f in files)
    return {"files": len(files), "bytes": size, "seconds": v.seconds, "mb_per_s": size / 1e6 / v.seconds}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.shard_verify_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(os.environ.get("MEGAGROW_CACHE") or Path.home() / ".cache/megagrow")
                                         / "bench" / "gpt-2048"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "shard-verify-cost-cpu.json"))
    args = p.parse_args()
    data = Path(args.data)
    runs: dict[str, list[dict]] = {"off": [], "background": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for verify in runs:
                m = one_run(data, verify, args.steps, Path(tmp), f"{verify}-{r}")
                runs[verify].append(m)
                print(f"round {r + 1} {verify}: {m}", flush=True)
    med = {v: {k: statistics.median(m[k] for m in ms) for k in ms[0]} for v, ms in runs.items()}
    result = {"command": command("benchmarks.shard_verify_cost"), "data": str(data),
              "steps": args.steps, "rounds": args.rounds, "runs": runs, "median": med,
              "background_over_off": {k: med["background"][k] / med["off"][k] for k in med["off"]},
              "hashing_alone": hash_rate(data), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"median": med, "background_over_off": result["background_over_off"],
                      "hashing_alone": result["hashing_alone"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
