#!/usr/bin/env bash
# Build .gpu/ (git-ignored, in the repo root) on the DEVELOPMENT machine: what the GPU benchmark machine lacks
# (/work/shared/notes/gpu-machine.md: Python 3.12 + torch there, but no DeepSpeed and no network), carried along
# with the checkout to be installed there by benchmarks/throughput/gpu-check.sh.
#
#   benchmarks/throughput/gpu-bundle.sh            # then carry .gpu with the checkout
#
#   .gpu/site/  DeepSpeed and its pure-Python dependencies missing there (hjson, pydantic, annotated_types,
#               typing_inspection) with their *.dist-info, copied out of this venv's site-packages, no __pycache__
#   .gpu/whl/   pydantic_core (the one binary dependency) for CPython 3.12 manylinux x86_64, the venv's version
#   .gpu/data/  a 32,768-token BPE GPT dataset over the benchmark corpus's Austen and KJV books (what the committed
#               GPU results used); kept if already built (REBUILD_DATA=1 rebuilds it)
#
# Environment: VENV (default .venv), BENCH_TEXT (default ${MEGAGROW_CACHE:-~/.cache/megagrow}/bench/text).
# Fails if .gpu/ is 60 MiB or more (the device tool carries at most 64 MiB); prints the checkout's size beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
venv=${VENV:-$root/.venv}
py=$venv/bin/python
text=${BENCH_TEXT:-${MEGAGROW_CACHE:-$HOME/.cache/megagrow}/bench/text}
gpu=$root/.gpu

# 1. never committed: /.gpu/ in .git/info/exclude (a local ignore, not .gitignore)
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
touch "$exclude"
grep -qxF '/.gpu/' "$exclude" || echo '/.gpu/' >>"$exclude"
mkdir -p "$gpu/whl"

# 2. DeepSpeed and its pure-Python dependencies, from the venv
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$gpu/site"
mkdir -p "$gpu/site"
for pkg in deepspeed hjson pydantic annotated_types typing_inspection; do
  [[ -d "$site/$pkg" ]] || { echo "gpu-bundle: $pkg not installed in $site" >&2; exit 1; }
  cp -r "$site/$pkg" "$gpu/site/"
  # shellcheck disable=SC2086  # the glob must expand
  cp -r "$site"/${pkg}-*.dist-info "$gpu/site/"
done
find "$gpu/site" -name __pycache__ -type d -prune -exec rm -rf {} +
echo "site: $(du -sh "$gpu/site" | cut -f1):" "$gpu"/site/*[!o]  # the packages (not their *.dist-info)

# 3. pydantic_core for CPython 3.12 (the GPU machine's Python), the venv's version
core=$("$py" -c 'import importlib.metadata as m; print(m.version("pydantic_core"))')
if ! ls "$gpu"/whl/pydantic_core-"$core"-cp312-*.whl >/dev/null 2>&1; then
  rm -f "$gpu"/whl/*.whl
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 -d "$gpu/whl" "pydantic_core==$core"
fi
echo "whl: $(ls "$gpu/whl")"

# 4. the dataset: 32k BPE over Austen + KJV
if [[ -n "${REBUILD_DATA:-}" || ! -f "$gpu/data/manifest.json" ]]; then
  for book in austen kjv; do
    [[ -d "$text/$book" ]] || { echo "gpu-bundle: no $text/$book (the benchmark corpus)" >&2; exit 1; }
  done
  rm -rf "$gpu/data"
  "$venv/bin/megagrow-prep" build --input "$text/austen" --input "$text/kjv" --out "$gpu/data" \
    --vocab-size 32768 --no-progress
fi
echo "data: $(du -sh "$gpu/data" | cut -f1) ($gpu/data)"

# 5. sizes
total=$(du -sb "$gpu" | cut -f1)
tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
untracked=$( (git ls-files -z --others --exclude-standard | du -cb --files0-from=- 2>/dev/null || true) | tail -1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo ".gpu: $(mib "$total"); the checkout with it: $(mib $((total + tracked + ${untracked:-0}))) " \
  "(tracked $(mib "$tracked"), untracked $(mib "${untracked:-0}"))"
if ((total >= 60 * 1048576)); then
  echo "gpu-bundle: .gpu is $(mib "$total"), over the 60 MiB budget" >&2
  exit 1
fi
if ((total + tracked + ${untracked:-0} >= 64 * 1048576)); then
  echo "gpu-bundle: WARNING: the checkout with .gpu is over 64 MiB, more than the device tool carries" >&2
fi
echo "ok: carry .gpu with the checkout, then run benchmarks/throughput/gpu-check.sh there"
