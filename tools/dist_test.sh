#!/usr/bin/env bash
# Launch tools/test.py on GPUS processes of this node with torchrun:
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options...]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR and PORT on each node.
# Without GPUs the processes run on the CPU (gloo); PYTHON picks the
# interpreter (default: python).
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
HERE=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" \
"${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$HERE/test.py" \
    "$CONFIG" "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
