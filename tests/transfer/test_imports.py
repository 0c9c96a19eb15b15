"""The transfer package keeps the model side free of pymatgen (and of ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_transfer_loads_neither_pymatgen_nor_ray() -> None:
    code = (
        "import sys, tlsearch.transfer; "
        "bad = [m for m in ('pymatgen', 'ray') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
