#!/usr/bin/env bash
# Train with NUM_PROCS processes per machine (torchrun driving mmengine's Runner):
#   tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py options]
# One process per GPU with CUDA (NCCL), CPU processes with gloo otherwise. Several machines:
# run it on each with NNODES, NODE_RANK (0..NNODES-1), MASTER_ADDR (node 0's address) and
# PORT set alike. PYTHON picks the interpreter (default: the repo's .venv, else python).
# (tools/dist_test.sh runs this script with MMREGNET_DIST_TOOL=test.py.)
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCS [train.py options]" >&2
    exit 2
fi
CONFIG=$1
NUM_PROCS=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
DEFAULT_PY=$HERE/../.venv/bin/python
[ -x "$DEFAULT_PY" ] || DEFAULT_PY=python
exec "${PYTHON:-$DEFAULT_PY}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NUM_PROCS" \
    "$HERE/${MMREGNET_DIST_TOOL:-train.py}" "$CONFIG" --launcher pytorch "$@"
