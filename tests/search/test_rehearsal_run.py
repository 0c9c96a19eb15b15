"""Rehearsals run end to end on the paper's files (``tlsearch search --rehearse --offline``).

The default suite rehearses ``pairwise_cpu.yaml`` (one seed; again with ``search.prefilter``,
~20 s); the slow ones rehearse the paper specs named by the issue that asked for rehearsals
(``ft_strategy``, ``mpt``, ``best_pair``), one seed each, every other axis whole.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.search.conftest import REPO
from tlsearch.cli.main import main as search_cli
from tlsearch.results.store import read_runs


def rehearse(name: str, storage, capsys, seeds: int = 1, spec=None) -> list[dict]:
    """Rehearse ``search_spaces/<name>.yaml`` (or the file ``spec`` of that name) from the
    project root; its rows."""
    cwd = os.getcwd()
    os.chdir(REPO)  # the specs' vars.paper is relative to the project root
    try:
        code = search_cli(
            ["search", str(spec or f"search_spaces/{name}.yaml"), "--rehearse", "--offline",
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


@pytest.mark.realdata
def test_rehearse_a_prefiltered_search(paper_data, local_ray, tmp_path, capsys):
    """pairwise_cpu with search.prefilter keep 1: the rehearsal scores both PT models on the
    real DC files (100 and 800 structures) and still runs every configuration."""
    text = (REPO / "search_spaces" / "pairwise_cpu.yaml").read_text()
    spec = tmp_path / "pairwise_cpu.yaml"
    spec.write_text(text.replace("metric: val_mae}", "metric: val_mae, prefilter: {keep: 1}}"))
    rows = rehearse("pairwise_cpu", tmp_path, capsys, spec=spec)
    assert len([r for r in rows if r["kind"] != "pretrain"]) == 6
    assert all(r["status"] == "ok" for r in rows)
    rankings = [
        json.loads(p.read_text())
        for p in (tmp_path / "pairwise_cpu-rehearsal" / "prefilter").glob("*.json")
    ]
    assert sorted(r["ft_size"] for r in rankings) == [100, 800]
    for ranking in rankings:
        assert [m["n"] for m in ranking["models"]] == [ranking["ft_size"]] * 2
        assert all(m["probe_mae"] > 0 for m in ranking["models"]) and len(ranking["kept"]) == 2
