#!/usr/bin/env bash
# The GPU check (issues 14 and 33), unattended on a GPU node: fused vs reference kernel parity
# on CUDA, CUDA training throughput of the paper's model vs alignn's pure model, peak memory of
# a gpu: 0.25 trial, the DDP path on NCCL, 4 trials at gpu: 0.25 vs one at gpu: 1, and
# fp32/tf32/bf16 speed and accuracy; prints one table (tlsearch bench gpu --help).
#   bash scripts/gpu_check.sh [--json gpu_check.json] [--only parity train ddp ...]
#   bash scripts/gpu_check.sh --prepare   # on this machine: the small wheels a lent GPU lacks
# Exit status: 0 all checks ran, 1 a check failed, 2 no usable CUDA GPU (one line says why).
#
# With the project's venv (.venv, or $PYTHON) every check runs; it needs a CUDA build of torch
# (on a Linux GPU node scripts/setup.sh's torch==2.13.0 from PyPI is one; a venv holding the
# CPU wheel (+cpu) is refused with the install line). A lent GPU machine has no venv: python3
# with a CUDA torch, numpy and pyarrow, and nothing can be installed there. Without a venv and
# $PYTHON, python3 runs what the model core can (parity, memory, precision; train only where
# alignn imports) with the wheels --prepare put in .gpu_deps/ (pydantic for the configs,
# jarvis-tools for the CGCNN atom features) on its path, and lists ddp and packing as skipped
# (they need Ray). The one command there, .gpu_deps carried: bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=.gpu_deps
if [ "${1:-}" = "--prepare" ]; then
  PY="${PYTHON:-.venv/bin/python}"
  # the versions of this venv, as CPython 3.12 x86-64 wheels (the lent machines' Python)
  mapfile -t PINS < <("$PY" -c 'from importlib.metadata import version as v
for name in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection",
             "typing-extensions", "jarvis-tools"):
    print(f"{name}=={v(name)}")')
  rm -rf "$DEPS"
  "$PY" -m pip install --quiet --target "$DEPS" --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 "${PINS[@]}"
  echo "gpu_check: $DEPS/ holds ${PINS[*]} ($(du -sh "$DEPS" | cut -f1)); carry it to the GPU"
  exit 0
fi
PY="${PYTHON:-.venv/bin/python}"
if [ -z "${PYTHON:-}" ] && [ ! -x "$PY" ] && command -v python3 >/dev/null 2>&1 \
    && python3 -c "import torch" >/dev/null 2>&1; then
  PY=python3  # a lent GPU machine: its own python3 and torch, the model core of this tree
  export PYTHONPATH="$PWD:$PWD/$DEPS${PYTHONPATH:+:$PYTHONPATH}"
  echo "gpu_check: no venv here: the model core's checks on $(python3 --version 2>&1)," \
    "torch $(python3 -c 'import torch; print(torch.__version__)'); ddp and packing need Ray" >&2
  [ -d "$DEPS" ] || echo "gpu_check: no $DEPS/ (run scripts/gpu_check.sh --prepare where" \
    "the venv is and carry it): pydantic and jarvis-tools may be missing" >&2
fi
if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
  echo "gpu_check: no Python at $PY: run scripts/setup.sh first (or set PYTHON)" >&2
  exit 2
fi
export OMP_WAIT_POLICY=PASSIVE
exec "$PY" -m tlsearch.bench.gpu "$@"  # not the CLI package: it may need more than the core
