#!/usr/bin/env bash
# Create ./.venv and install tlsearch with everything its tests and demo need.
# torch goes first, pinned to the CPU wheel this project is developed on: with no torch
# installed, a plain requirement would pull a multi-GB CUDA build (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[test,search,foundation]"
# The alignn package is the reference peer of the parity tests and benchmarks. Its own
# requirements include DGL, which does not import with current torch, so it is installed
# without them, plus pydantic-settings, which it needs for what tlsearch uses (graph builder, model classes).
"${PIP[@]}" --no-deps "alignn==2026.8.11"
"${PIP[@]}" "pydantic-settings>=2"
