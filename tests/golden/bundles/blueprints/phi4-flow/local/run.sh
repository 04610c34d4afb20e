#!/usr/bin/env bash
# Run the training on this computer (1 rank):
#     bash run.sh [train.py options]      e.g. bash run.sh --resume never --epochs 1
# Outputs go to run/ next to this script, or to $RUN_DIR; $PYTHON picks the interpreter.
# Relative data paths are read from $DTEC_DATA_ROOT (`dtec run` sets the blueprint's folder).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
export PYTHONUNBUFFERED="1"
# Fixed glibc malloc thresholds: no fresh mmap per big tensor, CPU training 1.1-1.4x faster.
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1073741824}"
export OMP_NUM_THREADS=2

exec "${PYTHON:-python}" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=1 train.py --run-dir "${RUN_DIR:-run}" "$@"
