#!/usr/bin/env bash
# One command for a machine with a CUDA GPU (about 5-8 minutes on one GPU): installs nothing (it uses the
# environment of the test command, bash scripts/run_tests.sh, or PYTHON), runs the CUDA tests, then times the
# training step at the paper's setting
# (832x256, batch 4, mni 3, all losses) in float32 / float32 + channels-last / bf16 / bf16 + channels-last
# / bf16 + channels-last + compile, and prints s/step, images/s, speed-up and peak GPU memory.
# Variables: PYTHON (default .venv/bin/python: the test command's environment; any interpreter with the
# requirements and the repository importable), STEPS (10), COMPILE (1: include the compiled row; 0 to skip it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if ! command -v "$PYTHON" > /dev/null; then
    echo "error: PYTHON=$PYTHON: not found (run bash scripts/run_tests.sh once to create .venv, or set PYTHON)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "error: no CUDA GPU visible to $PYTHON (torch.cuda.is_available() is False)" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== CUDA tests"
"$PYTHON" -m pytest -q tests/test_cuda.py tests/test_precision.py -p no:cacheprovider
echo "== training step, 832x256, batch 4, mni 3, all losses"
compile_flag=()
[ "${COMPILE:-1}" = 1 ] && compile_flag=(--compile)
"$PYTHON" -m benchmarks.bench_train_step --device cuda --height 256 --width 832 --batch 4 --mni 3 \
    --steps "${STEPS:-10}" --compare "${compile_flag[@]}"
