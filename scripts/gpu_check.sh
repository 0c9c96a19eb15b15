#!/usr/bin/env bash
# The GPU check (issue 14), unattended on a GPU node: CUDA training throughput of the paper's
# model vs alignn's pure model, peak memory of a gpu: 0.25 trial, the DDP path on NCCL, and
# 4 trials at gpu: 0.25 vs one at gpu: 1; prints one table (tlsearch bench gpu --help).
#   bash scripts/gpu_check.sh [--json gpu_check.json] [--only train ddp ...]
# Exit status: 0 all checks ran, 1 a check failed, 2 no usable CUDA GPU (one line says why).
# The venv needs a CUDA build of torch: on a Linux GPU node scripts/setup.sh's torch==2.13.0
# from PyPI is one; a venv holding the CPU wheel (+cpu) is refused with the install line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
  echo "gpu_check: no Python at $PY: run scripts/setup.sh first (or set PYTHON)" >&2
  exit 2
fi
export OMP_WAIT_POLICY=PASSIVE
exec "$PY" -m tlsearch bench gpu "$@"
