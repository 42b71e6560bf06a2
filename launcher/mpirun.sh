#!/bin/bash
# megagrow with Open MPI's mpirun: one MPI rank per GPU on the hosts of HOSTFILE (Open MPI's format, which is
# also DeepSpeed's: "<host> slots=<ranks>" per line). mpirun reaches the other hosts over passwordless ssh.
# `megagrow train` reads OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK (or asks mpi4py when it is installed);
# rank 0's host is the first line of HOSTFILE unless MASTER_ADDR is set.
#
#   launcher/mpirun.sh HOSTFILE configs/gpt-tiny-apollo.yaml [--section.key=value ...]
set -euo pipefail

# ---- change these ----------------------------------------------------------------------------------------
MEGAGROW_VENV=${MEGAGROW_VENV:-$HOME/megagrow/.venv}   # venv with megagrow, at the same path on every host
NETWORK=${NETWORK:-10.0.0.0/8}             # the hosts' shared network (CIDR or interface name) for MPI's traffic
MASTER_PORT=${MASTER_PORT:-29500}          # rank 0's rendezvous port (free on rank 0's host)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}   # CPU threads per rank
MPIRUN_ARGS=${MPIRUN_ARGS:-}               # extra mpirun flags, e.g. "--allow-run-as-root" in a root container
# ----------------------------------------------------------------------------------------------------------

if [ $# -lt 2 ]; then
  echo "usage: $0 HOSTFILE CONFIG.yaml [--section.key=value ...]" >&2
  exit 2
fi
hostfile=$1
shift
if [ ! -f "$hostfile" ]; then
  echo "$0: hostfile '$hostfile' not found (expected lines '<host> slots=<n>')" >&2
  exit 2
fi
# ranks = the sum of the slots; rank 0's host = the first host
np=$(awk '!/^[[:space:]]*(#|$)/ { n = $2; sub(/^slots=/, "", n); s += n } END { print s + 0 }' "$hostfile")
MASTER_ADDR=${MASTER_ADDR:-$(awk '!/^[[:space:]]*(#|$)/ { print $1; exit }' "$hostfile")}
export MASTER_ADDR MASTER_PORT
if [ "$np" -lt 1 ]; then
  echo "$0: hostfile '$hostfile' has no '<host> slots=<n>' lines" >&2
  exit 2
fi

# Forward what every rank needs; mpirun starts a clean environment on the other hosts.
forward=()
for var in MASTER_ADDR MASTER_PORT OMP_NUM_THREADS PYTHONPATH DS_ACCELERATOR GLOO_SOCKET_IFNAME \
           NCCL_SOCKET_IFNAME NCCL_IB_HCA MEGAGROW_CACHE LD_LIBRARY_PATH; do
  if [ -n "${!var:-}" ]; then
    forward+=(-x "$var")
  fi
done

# shellcheck disable=SC2086  # MPIRUN_ARGS is a list of flags
exec mpirun -np "$np" --hostfile "$hostfile" --map-by slot --bind-to none \
  --mca btl_tcp_if_include "$NETWORK" --mca oob_tcp_if_include "$NETWORK" \
  "${forward[@]}" $MPIRUN_ARGS \
  "$MEGAGROW_VENV/bin/python" -m megagrow.cli train "$@"
