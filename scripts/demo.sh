#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: the quickstart search on local Ray with
# generated data (pre-train, fine-tune with several strategies, scratch, seeds), ending in a
# Parquet run log and a plot under ${1:-results}/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/tlsearch search search_spaces/quickstart.yaml --storage "${1:-results}"
.venv/bin/tlsearch runs "${1:-results}/quickstart"
