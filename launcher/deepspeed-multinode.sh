#!/bin/bash
# Multi-node launch with DeepSpeed's launcher (pdsh over passwordless ssh).
#
#   launcher/deepspeed-multinode.sh HOSTFILE configs/gpt-tiny.yaml [--section.key=value ...]
#
# HOSTFILE has one line per node: "<hostname> slots=<gpus>". Variables to forward to every rank go
# in ./.deepspeed_env (KEY=VALUE lines). DeepSpeed appends --local_rank=N, which `megagrow train`
# accepts; ranks come from the RANK/WORLD_SIZE variables the launcher sets.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 HOSTFILE CONFIG.yaml [--section.key=value ...]" >&2
  exit 2
fi
hostfile=$1; shift
[ -f "$hostfile" ] || { echo "$0: hostfile '$hostfile' not found (expected lines '<host> slots=<n>')" >&2; exit 2; }
exec deepspeed --hostfile "$hostfile" --master_port "${MASTER_PORT:-29500}" \
  --module megagrow.cli train "$@"
