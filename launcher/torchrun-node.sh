#!/bin/bash
# One node's share of a multi-node torchrun job (run it on every node, e.g. from an sbatch with
# --ntasks-per-node=1):
#
#   NNODES=4 NODE_RANK=$SLURM_NODEID MASTER_ADDR=head-node launcher/torchrun-node.sh configs/gpt-tiny.yaml
set -euo pipefail
: "${NNODES:=1}" "${NODE_RANK:=0}" "${MASTER_ADDR:=127.0.0.1}" "${MASTER_PORT:=29500}"
: "${NPROC_PER_NODE:=$(python3 -c 'import torch; print(max(1, torch.cuda.device_count()))')}"
exec torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NPROC_PER_NODE" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" -m megagrow.cli train "$@"
