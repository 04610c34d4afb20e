#!/usr/bin/env bash
# The GPU benchmark: the transformer blueprint's generated train.py against the minimal
# hand-written loop, in bf16, on this machine's GPUs; prints the throughput ratio and the model
# FLOPs utilisation (MFU) and writes benchmarks/results/gpu/gpu.json. About 3-4 minutes on one
# H100 (--rounds 3: six runs of ~30 s, each mostly start-up; 300 measured steps).
#
#     bash benchmarks/gpu.sh                      # --size large: ~100 M parameters, 256 tokens
#     bash benchmarks/gpu.sh --size shipped       # the blueprint's own small model
#     bash benchmarks/gpu.sh --dry-run            # the same logic at toy sizes, fp32, on the CPU
#
# Needs torch with CUDA and dtec importable (pip install -e . or this checkout on PYTHONPATH: the
# bundle is compiled here, so that `local` sees this machine's GPUs). BENCH_PEAK_TFLOPS overrides
# the card's peak dense bf16 TFLOP/s used for MFU; BENCH_TIMEOUT (default 290 s) bounds the run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import dtec.compiler" 2>/dev/null; then
    echo "gpu.sh: dtec does not import with $PYTHON (pip install -e . installs its dependencies)" >&2
    exit 2
fi
if [[ " $* " != *" --dry-run "* ]]; then
    if ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; then
        echo "gpu.sh: no NVIDIA GPU (nvidia-smi failed); --dry-run checks the logic on the CPU" >&2
        exit 2
    fi
    "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no GPU')"
fi
exec timeout "${BENCH_TIMEOUT:-290}" "$PYTHON" -m benchmarks.gpu "$@"
