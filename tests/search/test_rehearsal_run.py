"""Rehearsals run end to end on the paper's files (``tlsearch search --rehearse --offline``).

The default suite rehearses ``pairwise_cpu.yaml`` (one seed); the slow ones rehearse the paper
specs named by the issue that asked for rehearsals (``ft_strategy``, ``mpt``, ``best_pair``),
one seed each, every other axis whole.
"""

from __future__ import annotations

import os

import pytest

from tests.search.conftest import REPO
from tlsearch.results.store import read_runs
from tlsearch.search.cli import main as search_cli


def rehearse(name: str, storage, capsys, seeds: int = 1) -> list[dict]:
    """Rehearse ``search_spaces/<name>.yaml`` from the project root; its rows."""
    cwd = os.getcwd()
    os.chdir(REPO)  # the specs' vars.paper is relative to the project root
    try:
        code = search_cli(
            ["search", f"search_spaces/{name}.yaml", "--rehearse", "--offline",
             "--seeds", str(seeds), "--storage", str(storage), "--no-plot", "-q"]
        )  # fmt: skip
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rehearsal PASSED" in out, out
    return read_runs(storage / f"{name}-rehearsal" / "runs").to_pylist()


@pytest.mark.realdata
def test_rehearse_pairwise_cpu(paper_data, local_ray, tmp_path, capsys):
    rows = rehearse("pairwise_cpu", tmp_path, capsys)
    seed_runs = [r for r in rows if r["kind"] != "pretrain"]
    assert len(seed_runs) == 6 and all(r["status"] == "ok" for r in rows)
    assert all(r["rehearsal"] for r in rows)
    assert {r["ft_size"] for r in seed_runs} == {100, 800}
    assert {r["n_train"] + r["n_val"] for r in seed_runs} == {100, 800}  # the real files


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ft_strategy", "mpt", "best_pair"])
def test_rehearse_paper_spec(name, paper_data, local_ray, tmp_path, capsys):
    rows = rehearse(name, tmp_path, capsys)
    assert rows and all(r["rehearsal"] and r["status"] == "ok" for r in rows)
