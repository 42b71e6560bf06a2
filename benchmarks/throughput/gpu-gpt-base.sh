#!/usr/bin/env bash
# GPT-Base (12 x 768, seq 1024) bf16 on one GPU: megagrow's step against the plain loop, and MFU.
#   benchmarks/throughput/gpu-gpt-base.sh DATA_DIR OUT_JSON
# SIZES="gpt-base gpt-base-half" adds GPT-Base's half-width, half-depth model (a small phase's time per FLOP);
# VARIANTS="..." picks the variants (default below).
# DATA_DIR: a GPT dataset (megagrow-prep build; the committed result used a 32,768-token BPE on the benchmark
# corpus's Austen and KJV books: megagrow-prep build --input TEXT --out DATA_DIR --vocab-size 32768).
# With WHEELS=DIR (and SITE=DIR, an installed deepspeed), a machine without DeepSpeed gets it from there first.
# The one-command GPU check of the GPU presets (auto precision, compile, loss_chunk, GPT-Medium, phase batching) is
# gpu-check.sh beside this script (its bundle: gpu-bundle.sh).
set -euo pipefail
data=${1:?DATA_DIR}; out=${2:?OUT_JSON}
if [[ -n "${WHEELS:-}" ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/megagrow-site "$WHEELS"/*.whl
  cp -r "${SITE:?SITE}"/. /tmp/megagrow-site/
  export PYTHONPATH=/tmp/megagrow-site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv
python3 -c "import torch, deepspeed; print('torch', torch.__version__, 'deepspeed', deepspeed.__version__)"
export PYTHONUNBUFFERED=1
# the checkout on PYTHONPATH: `python3 -m benchmarks.throughput.run` from any directory
PYTHONPATH=$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH
# shellcheck disable=SC2086  # SIZES and VARIANTS are word lists
python3 -m benchmarks.throughput.run --device cuda --precision bf16 --sizes ${SIZES:-gpt-base} --data "$data" \
  --variants ${VARIANTS:-plain megagrow-z0 plain-compile megagrow-z0-compile megagrow-z2 megagrow-z0-autocast \
              megagrow-z2-autocast megagrow-z0-autocast-compile} \
  --rounds 1 --warmup 20 --steps 100 --timeout 200 --threads 8 --out "$out"
