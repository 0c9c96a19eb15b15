#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: the quickstart search on local Ray with
# generated data (pre-train, fine-tune with several strategies, scratch, seeds), ending in a
# Parquet run log and a plot under ${1:-results}/quickstart/, then the analysis report
# (${1:-results}/quickstart/report/report.html) and the best PT-FT configuration for the target.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE
out="${1:-results}"
if [ -d "$out/quickstart/tune" ]; then resume=--resume; else resume=; fi
.venv/bin/tlsearch search search_spaces/quickstart.yaml --storage "$out" $resume
.venv/bin/tlsearch runs "$out/quickstart"
.venv/bin/tlsearch analyze "$out/quickstart" --out "$out/quickstart/report"
.venv/bin/tlsearch best-pair --target target --results "$out/quickstart" \
    --out "$out/quickstart/best_pair"
