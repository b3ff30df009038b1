#!/usr/bin/env bash
# Create the virtual environment .venv (if needed), install the pinned requirements, run the tests.
# Extra arguments go to pytest (e.g. `bash scripts/run_tests.sh -k warp`). Exit code 5 of pytest
# ("no tests collected") is a failure like any other non-zero code.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
# the repository itself, editable (pyproject.toml): every script also runs by its path
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
    --config-settings editable_mode=compat -e .
exec .venv/bin/python -m pytest -q "$@"
