#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the demo: generated data -> graphs -> ALIGNN -> metrics + plot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/tlsearch demo --out "${1:-demo_out}"
