"""``tlsearch bench rank-sources``: on a finished search with two PT sources, every group with
2+ sources gets both estimates per source, their rank correlation with the fine-tuned test MAE
and the cost comparison."""

from __future__ import annotations

import json

import pytest

from tests.search.test_quickstart import QUICKSTART
from tlsearch.cli.main import main as tlsearch_main
from tlsearch.search.plan.spec import load_spec
from tlsearch.search.run.driver import run_search


def test_bench_rank_sources_on_a_search_with_two_sources(tmp_path, local_ray, monkeypatch):
    spec = load_spec(
        QUICKSTART,
        {
            "storage": str(tmp_path / "results"),
            "datasets": {
                "near": {"data": "generated:80:11"},
                "far": {"data": "generated2d:80:5"},
                "target": {"data": "generated:50:12", "test": "generated:16:13"},
            },
            "pt_sources": ["near", "far"],
            "pt_sizes": [None],
            "ft_sizes": [20],
            "scratch": False,
            "strategies": ["last_layer"],
            "seeds": [0, 1],
            "train": {"epochs": 2, "batch_size": 8},
            "model": {
                "alignn_layers": 1,
                "gcn_layers": 1,
                "hidden_features": 16,
                "embedding_features": 8,
            },
            "pretrain": {"train": {"epochs": 2}},
        },  # fmt: skip
    )
    status = run_search(spec, verbose=0)
    assert status.completed == 4 and status.pretrain_counts == {"ok": 2}
    results = tmp_path / "results" / "quickstart"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "default_cache"))
    graphs_before = sorted((tmp_path / "results" / "graphs").iterdir())
    assert tlsearch_main(["bench", "rank-sources", str(results)]) == 0
    # scored from the search's own cache (its graphs and trunk features), nothing built elsewhere
    assert not (tmp_path / "default_cache").exists() and not (tmp_path / ".tlsearch_cache").exists()
    # on the graphs fine-tuning used (the spec's max_neighbors: 8): no new graph cache entry
    graphs_after = sorted((tmp_path / "results" / "graphs").iterdir())
    assert [p for p in graphs_after if p not in graphs_before and p.name != "frozen_trunk"] == []
    report = json.loads((results / "bench_rank_sources.json").read_text())
    (group,) = report["groups"]
    assert group["group"]["strategy"] == "last_layer" and group["group"]["ft_size"] == 20
    assert {s["source"] for s in group["sources"]} == {"near", "far"}
    assert all(s["seeds"] == 2 and s["n"] == 20 for s in group["sources"])
    assert abs(group["spearman_probe"]) == pytest.approx(1.0)  # two sources: +-1
    assert group["top2_probe"] is True
    assert group["rank_seconds"] > 0 and group["ft_seconds"] > 0
    assert report["summary"]["groups"] == 1
