"""The scripts in analysis/ run on a result set and write what they promise."""

from __future__ import annotations

import subprocess
import sys

from tests.analysis.synthetic import write_results
from tests.conftest import REPO


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, check=True)  # fmt: skip
    return done.stdout + done.stderr


def test_analysis_scripts(tmp_path):
    write_results(tmp_path / "res")
    out = _run("analysis/pairwise_matrix.py", str(tmp_path / "res"), "--out", str(tmp_path / "m"))
    assert "pairwise_matrix.png" in out
    assert (tmp_path / "m" / "pairwise_matrix_mae.md").read_text().count("±") >= 3
    out = _run("analysis/paper_report.py", str(tmp_path / "res"), "--out", str(tmp_path / "r"))
    assert (tmp_path / "r" / "report.html").is_file() and "report:" in out
