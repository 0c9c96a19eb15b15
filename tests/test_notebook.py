"""examples/quickstart.ipynb runs top to bottom (nbclient, a fresh kernel): it cannot rot.

About 30 s on 2 CPUs (its own local Ray, 6 tiny seed-runs and a PT job), so in the default
suite; the API's functions are also tested one by one in tests/test_api.py."""

from __future__ import annotations

from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")
pytest.importorskip("ray")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_the_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "graphs"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "planned 6, completed 6, failed 0" in _text(code[1])
    assert "unfreeze_all" in _text(code[2]) and "test_mae" in _text(code[3])
    assert any(o.get("data", {}).get("image/png") for o in code[4].outputs)
    assert "Best for target" in _text(code[5])
    last = _text(code[-1])
    assert "mean" in last and "std" in last and "CsCl" in last
    assert (tmp_path / "best_pair" / "target" / "model" / "ensemble.json").is_file()
    assert (tmp_path / "results" / "notebook" / "runs").is_dir()
