#!/usr/bin/env bash
# The GPU check: ONE command for the GPU benchmark machine (one H200, Python 3.12 + torch, no DeepSpeed, no network;
# /work/shared/notes/gpu-machine.md), at most 8 minutes wall in all, run from the repo root with .gpu/ carried along
# (build it here first: benchmarks/throughput/gpu-bundle.sh):
#
#   benchmarks/throughput/gpu-check.sh                  # on the GPU machine; results to $OUT, else benchmarks/results
#   DRY_RUN=cpu benchmarks/throughput/gpu-check.sh      # here, on CPU: the same plumbing with the micro sizes
#
# .gpu/ is git-ignored (.git/info/exclude), so the device tool needs it named: carry [".gpu"] (21 MiB), and a
# timeout_s of ~540 leaves the guard's 470 s and the start room.
#
# What it does: installs .gpu/ (DeepSpeed and its dependencies, the cp312 pydantic_core wheel) into /tmp and puts it on
# PYTHONPATH, prints nvidia-smi and the versions, logs the GPU's memory.used every second, then runs
# python -m benchmarks.throughput.run --device cuda --precision bf16 on the 32k-vocab dataset .gpu/data, one invocation
# per group below (each under `timeout`, all of them ending by GUARD - 30 s), and merges their JSONs into one:
#
#   gpt-base           plain, megagrow-auto, plain-compile, megagrow-auto-compile, megagrow-z0 (DeepSpeed bf16)
#   gpt-base-fill      megagrow-auto-compile-chunk (the preset's 32 x 1024 with train.loss_chunk), plain-compile
#   gpt-medium         megagrow-auto-compile, plain-compile (24 x 1024 at the preset's 16 x 1024)
#   gpt-base-half      plain-compile, megagrow-auto-compile (6 x 384, 16 x 1024: a small growth phase's model)
#   gpt-base-msg-half  megagrow-auto-compile-pb, megagrow-auto-compile (MSG's first stage, 4 x 16 x 1024 a step,
#                      train.phase_batching auto vs off; -pb skipped where the trainer has no phase_batching)
#   growth-compile     a whole StackBERT run (3 -> 6 -> 12 layers, 90 steps) with train.compile: graphs, recompiles
#                      and seconds compiling over the growth (TAG-growth-compile.json)
#
# Results: $OUT/TAG-<group>.json (+ .png), the merged $OUT/TAG.json + .png (per variant: tokens/s, ratio to the plain
# loop, MFU, compile_stats, resolved_precision, gpu_memory_used_peak_mib), TAG-gpu-memory.csv and TAG.log;
# TAG = throughput-h200-v3 (dry run: throughput-cpu-dryrun, results to $OUT else /tmp/megagrow-gpu-check-dryrun).
# Every run.py invocation rewrites its JSON after each measurement, and a hard `timeout GUARD` (470 s) bounds the
# whole command, so what was measured comes back even when something hangs.
#
# Budget (H200, from earlier logs): a process start + data + model ~10-15 s, DeepSpeed's engine ~25 s, inductor
# compiling one GPT block shape (forward + backward) ~20-40 s cold, ~5-10 s from the FX graph cache of an earlier
# process; 10 warmup + 40 timed steps take 2-5 s. Groups run in order of importance; one that no longer fits is
# skipped and logged.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
root=$PWD
GUARD=${GUARD:-470}
dry=${DRY_RUN:-}
if [[ -n "$dry" && "$dry" != cpu ]]; then
  echo "gpu-check: DRY_RUN=$dry: only DRY_RUN=cpu exists" >&2
  exit 2
fi
if [[ -n "$dry" ]]; then
  out=${OUT:-/tmp/megagrow-gpu-check-dryrun}
  tag=${TAG:-throughput-cpu-dryrun}
else
  out=${OUT:-$root/benchmarks/results}
  tag=${TAG:-throughput-h200-v3}
fi
mkdir -p "$out"
log=$out/$tag.log

# ------------------------------------------------------------------------------------------------ the hard guard
if [[ -z "${_GPU_CHECK_INNER:-}" ]]; then
  rm -f "$out/$tag".json "$out/$tag".png "$out/$tag"-*.json "$out/$tag"-*.png "$out/$tag"-gpu-memory.csv
  : >"$log"
  _GPU_CHECK_INNER=1 OUT=$out TAG=$tag timeout --kill-after=5 "$GUARD" "$0" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  if ((rc == 124 || rc == 137)); then
    echo "gpu-check: stopped by the ${GUARD} s guard (exit $rc)" | tee -a "$log"
    if [[ ! -f "$out/$tag.json" ]]; then  # merge what the groups wrote, if a few seconds allow
      py=python3
      [[ -n "$dry" && -x .venv/bin/python ]] && py=.venv/bin/python
      PYTHONPATH=/tmp/megagrow-site:$root timeout 8 "$py" -m benchmarks.throughput.run --merge "$out/$tag"-*.json \
        --out "$out/$tag.json" --gpu-memory-csv "$out/$tag-gpu-memory.csv" >>"$log" 2>&1
    fi
  fi
  exit "$rc"
fi

# ------------------------------------------------------------------------------------------------ setup
deadline=$((GUARD - 30))  # seconds (of this script's SECONDS) by which every group has ended: the rest merges
echo "gpu-check: $(date -Is) on $(hostname); out $out; tag $tag; guard ${GUARD} s${dry:+; DRY RUN on $dry}"
git log -1 --format='commit %h %s' 2>/dev/null || echo "(no git metadata in this checkout)"
site=/tmp/megagrow-site
if [[ -n "$dry" ]]; then
  py=$root/.venv/bin/python
  [[ -x "$py" ]] || py=python3
  site=/tmp/megagrow-site-dryrun  # installed to prove the step, not put on PYTHONPATH (the cp312 wheel is not 3.11's)
fi
if [[ -d .gpu/site && -d .gpu/whl ]]; then
  rm -rf "$site"
  mkdir -p "$site"
  # --python-version 3.12: the same command installs the GPU machine's cp312 wheel from any Python (the dry run's)
  if ! timeout 60 "${py:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 \
      --target "$site" .gpu/whl/*.whl; then
    echo "gpu-check: pip install failed; unpacking the wheels instead"
    for w in .gpu/whl/*.whl; do "${py:-python3}" -m zipfile -e "$w" "$site"; done
  fi
  cp -r .gpu/site/. "$site"/
  echo "installed .gpu into $site:" "$site"/*[!o]  # the packages (not their *.dist-info)
else
  echo "gpu-check: no .gpu/site and .gpu/whl (benchmarks/throughput/gpu-bundle.sh builds them); DeepSpeed must be installed"
fi
if [[ -n "$dry" ]]; then
  export DS_ACCELERATOR=cpu OMP_NUM_THREADS=2
  device=cpu precision=fp32 threads=2
  common=(--warmup 5 --steps 5 --log-every 5 --loss-chunk 8 --timeout 150)
  data=()
else
  py=python3
  export PYTHONPATH=$site:$root${PYTHONPATH:+:$PYTHONPATH}
  device=cuda precision=bf16 threads=8
  common=(--warmup 10 --steps 40 --log-every 10 --timeout 150)
  data=(--data "$root/.gpu/data")
  [[ -f .gpu/data/manifest.json ]] || { echo "gpu-check: no .gpu/data (gpu-bundle.sh)"; data=(); }
fi
export PYTHONUNBUFFERED=1
mem_csv=$out/$tag-gpu-memory.csv
mem_pid=
if command -v nvidia-smi >/dev/null; then
  timeout 20 nvidia-smi
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -l 1 >"$mem_csv" 2>&1 &
  mem_pid=$!
else
  echo "(no nvidia-smi${dry:+: dry run})"
fi
timeout 90 "$py" - <<'EOF'
import platform, sys
print("python", platform.python_version(), sys.executable)
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
for name in ("triton", "deepspeed", "pydantic", "pydantic_core", "hjson"):
    try:
        mod = __import__(name)
        print(name, getattr(mod, "__version__", "?"), mod.__file__)
    except Exception as e:  # noqa: BLE001
        print(name, "NOT IMPORTABLE:", e)
EOF

# ------------------------------------------------------------------------------------------------ the groups
size_of() {  # the dry run measures micro (and micro under MSG) in place of every GPU size
  if [[ -z "$dry" ]]; then echo "$1"; elif [[ $1 == *msg* ]]; then echo micro-msg-half; else echo micro; fi
}
results=()  # the groups' JSONs, in the order they ran (the merged file keeps it)
group() {  # group NAME CAP_S SIZE VARIANT...
  local name=$1 cap=$2 size
  size=$(size_of "$3")
  shift 3
  local left=$((deadline - SECONDS)) t0=$SECONDS
  local t=$((cap < left ? cap : left))
  if ((t < 30)); then
    echo "== $name: SKIPPED, ${left} s left before the deadline"
    return
  fi
  echo "== $name: $size: $* (at most $t s; at $(date +%T), ${SECONDS} s in)"
  timeout --kill-after=5 "$t" "$py" -m benchmarks.throughput.run --device "$device" --precision "$precision" \
    --threads "$threads" --rounds 1 "${common[@]}" "${data[@]}" --sizes "$size" --variants "$@" \
    --out "$out/$tag-$name.json"
  echo "== $name: exit $? after $((SECONDS - t0)) s"
  if [[ -f "$out/$tag-$name.json" ]]; then results+=("$out/$tag-$name.json"); fi
}
group gpt-base 150 gpt-base plain megagrow-auto plain-compile megagrow-auto-compile
group gpt-base-fill 100 gpt-base-fill megagrow-auto-compile-chunk plain-compile
group gpt-medium 110 gpt-medium megagrow-auto-compile plain-compile
group gpt-base-half 70 gpt-base-half plain-compile megagrow-auto-compile
group gpt-base-msg-half 80 gpt-base-msg-half megagrow-auto-compile-pb megagrow-auto-compile
growth_compile() {  # growth_compile CAP_S: a whole StackBERT run (3 -> 6 -> 12 layers) with train.compile at GPT-Base:
  # graphs compiled, recompiles and seconds compiling over the growth (the target: no recompilation inside a phase,
  # compile time <= 5 % of a 10-minute run), from the run's metrics into $out/$tag-growth-compile.json
  local cap=$1 left=$((deadline - SECONDS)) t0=$SECONDS run=/tmp/megagrow-growth-compile
  local t=$((cap < left ? cap : left))
  if ((t < 30)); then
    echo "== growth-compile: SKIPPED, ${left} s left before the deadline"
    return
  fi
  # shellcheck disable=SC2054  # the commas are growth.boundaries' list, not array separators
  local shape=(--model.size=gpt-base --data.seq_len=1024 --data.micro_batch_size=16 --train.max_steps=90
               --growth.boundaries=30,60)
  # shellcheck disable=SC2054
  [[ -n "$dry" ]] && shape=(--model.n_layers=12 --model.hidden=32 --model.n_heads=2 --model.ffn=64 --data.seq_len=16
                            --data.micro_batch_size=2 --train.max_steps=30 --growth.boundaries=10,20)
  echo "== growth-compile: StackBERT 3 -> 6 -> 12 with train.compile (at most $t s; ${SECONDS} s in)"
  rm -rf "$run"
  timeout --kill-after=5 "$t" "$py" -m megagrow.cli train benchmarks/throughput/configs/gpt.yaml \
    --run.out_dir="$run" --run.name=stackbert --model.dropout=0 --model.attn_dropout=0 "${shape[@]}" \
    --growth.plan=stackbert --growth.stages=3,6,12 --growth.boundary_unit=steps --growth.moments=copy \
    --train.compile=true --logging.log_every=5 --checkpoint.resume=never \
    ${data[1]:+--data.path=${data[1]}}
  echo "== growth-compile: exit $? after $((SECONDS - t0)) s"
  "$py" - "$run/stackbert/metrics.jsonl" "$out/$tag-growth-compile.json" <<'PY' || true
import json, sys
from pathlib import Path
recs = [json.loads(x) for x in Path(sys.argv[1]).read_text().splitlines() if x.strip()]
phases = {}
for r in recs:
    p = phases.setdefault(r["phase"], {"graphs_at_start": None, "records": 0})
    p["records"] += 1
    p["graphs_at_end"] = r.get("compile_graphs")
    p["graphs_at_start"] = p["graphs_at_start"] if p["graphs_at_start"] is not None else r.get("compile_graphs")
last = recs[-1]
out = {"what": "StackBERT 3->6->12 with train.compile: dynamo's counts over the whole run (megagrow metrics)",
       "steps": last["step"], "wall_s": last["wall_s"], "compile_graphs": last.get("compile_graphs"),
       "compile_recompiles": last.get("compile_recompiles"), "compile_s": last.get("compile_s"),
       "compile_share_of_this_run": (last.get("compile_s") or 0) / last["wall_s"],
       "compile_share_of_a_10_minute_run": (last.get("compile_s") or 0) / 600.0,
       "tokens_per_s_last_record": last["tokens_per_s"], "mfu_last_record": last.get("mfu"), "phases": phases}
Path(sys.argv[2]).write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps(out, indent=1))
PY
}
growth_compile 75
group gpt-base-deepspeed 45 gpt-base megagrow-z0

# ------------------------------------------------------------------------------------------------ merge
if [[ -n "$mem_pid" ]]; then kill "$mem_pid" 2>/dev/null; fi
echo "== merge ($(date +%T), ${SECONDS} s in)"
if ((${#results[@]})); then
  timeout 25 "$py" -m benchmarks.throughput.run --merge "${results[@]}" --out "$out/$tag.json" \
    --gpu-memory-csv "$mem_csv"
else
  echo "gpu-check: no group wrote a result"
fi
echo "gpu-check: done in ${SECONDS} s; results:" "$out/$tag"*
