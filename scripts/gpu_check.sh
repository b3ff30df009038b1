#!/usr/bin/env bash
# One command for a machine with a CUDA GPU (about 5-8 minutes on one GPU): installs nothing beyond
# requirements.txt, runs the CUDA tests, then times the training step at the paper's setting
# (832x256, batch 4, mni 3, all losses) in float32 / float32 + channels-last / bf16 / bf16 + channels-last
# / bf16 + channels-last + compile, and prints s/step, images/s, speed-up and peak GPU memory.
# Variables: PYTHON (default .venv/bin/python, created if missing), STEPS (10), COMPILE (1: include the
# compiled row; 0 to skip it), SKIP_INSTALL (1: use the environment as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
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
