#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the default test suite, lint included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/ruff check tlsearch tests bench analysis
.venv/bin/python -m pytest -q "$@"
