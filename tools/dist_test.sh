#!/usr/bin/env bash
# Evaluate a checkpoint with NUM_PROCS processes per machine (torchrun driving mmengine's Runner):
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [tools/test.py options]
# The same environment variables as tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR, PORT,
# PYTHON) apply.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 CONFIG CHECKPOINT NUM_PROCS [test.py options]" >&2; exit 2; }
config=$1 checkpoint=$2 procs=$3
shift 3
MMREGNET_DIST_TOOL=test.py exec "$(dirname "$0")/dist_train.sh" "$config" "$procs" "$checkpoint" "$@"
