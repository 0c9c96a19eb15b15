"""search.prefilter: the lowest-ranked PT models' seed-runs are recorded as skipped, the
ranking is computed once per group and kept for retries and --resume."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tests.search.conftest import executions, fake_spec
from tlsearch.analysis.aggregate import summarize
from tlsearch.analysis.best_pair import _eligible
from tlsearch.results.store import RunStore, read_runs
from tlsearch.search.plan.points import Point
from tlsearch.search.run.driver import run_search
from tlsearch.search.run.prefilter import candidates, group_key, model_name

RANK_FN = "tests.search.fakes:fake_rank"


def _spec(tmp_path, **over):
    datasets = {"A": "ok", "B": "ok", "C": "ok", "D": "ok", "E": "baddata"}
    values = {
        "pt_sources": ["B", "C", "D", "E"],
        "strategies": ["unfreeze_all", "last_layer"],
        "search": {"prefilter": {"keep": 2}},
        "testing": {"job_fn": "tests.search.fakes:fake_job", "rank_fn": RANK_FN},
        **over,
    }
    return fake_spec(tmp_path, datasets=datasets, **values)


def _rankings(tmp_path):
    log = tmp_path / "log" / "rankings.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_lowest_ranked_sources_are_skipped_and_stated_in_the_rows(tmp_path, local_ray):
    spec = _spec(tmp_path)
    status = run_search(spec, verbose=0)
    # scratch + 4 sources x 2 strategies, 2 seeds; the PT job of E fails (bad data)
    assert status.planned == 18 and status.remaining == 0
    assert status.counts == {"ok": 10, "skipped": 8}
    assert "skipped 8" in status.counts_line()
    rows = RunStore.for_search(spec.storage, spec.name).rows()
    by_source = {}
    for row in rows:
        if row["kind"] == "finetune":
            by_source.setdefault(row["pt_source"], set()).add(row["status"])
    assert by_source == {"B": {"ok"}, "C": {"ok"}, "D": {"skipped"}, "E": {"skipped"}}
    skipped = {r["pt_source"]: r["error"] for r in rows if r["status"] == "skipped"}
    assert "ranks 3 of 4 for A by probe_mae (0.3; keep 2: B, C)" in skipped["D"]
    assert "ranks 4 of 4" in skipped["E"] and "(n/a;" in skipped["E"]

    # one scoring per PT model that exists (E's PT job failed: not scored), for one group
    assert sorted(r[0] for r in _rankings(tmp_path)) == ["B", "C", "D"]
    files = list((tmp_path / "store" / "fake" / "prefilter").glob("*.json"))
    assert len(files) == 1
    ranking = json.loads(files[0].read_text())
    assert [m["model"] for m in ranking["models"]] == ["B", "C", "D", "E"]
    assert ranking["kept"] == ["B", "C"] and "has no atoms" in ranking["models"][3]["error"]
    # no FT job ran for the skipped sources
    ran = [json.loads(line) for line in executions(tmp_path)]
    assert sum(1 for r in ran if r[0] == "finetune") == 8

    summary = summarize(read_runs(f"{spec.storage}/fake/runs").to_pandas(), planned_seeds=2)
    lines = summary[summary["kind"] == "finetune"].set_index(["pt_source", "strategy"])
    assert lines.loc[("D", "last_layer"), "n_skipped"] == 2
    assert not lines["incomplete"].any()
    assert _eligible(lines.loc[("D", "last_layer")], 2) == (False, "skipped by search.prefilter")
    assert _eligible(lines.loc[("B", "last_layer")], 2) == (True, "")

    before = (len(executions(tmp_path)), len(_rankings(tmp_path)))
    again = run_search(spec, resume=True, verbose=0)
    assert again.counts == {"ok": 10, "skipped": 8}
    assert (len(executions(tmp_path)), len(_rankings(tmp_path))) == before


def test_logme_ranks_higher_first(tmp_path):
    spec = _spec(tmp_path, search={"prefilter": {"keep": 1, "by": "logme"}})
    point = Point("finetune", "A", 10, "random", 1e-3, "B", None, "unfreeze_all")
    assert [model_name(c) for c in candidates(spec, point)] == ["B", "C", "D", "E"]
    other = _spec(tmp_path, search={"prefilter": {"keep": 1}})
    assert group_key(spec, point) != group_key(other, point)  # the estimate is in the key

    from tlsearch.search.run.prefilter import _order

    entries = [{"logme": -0.3}, {"logme": -0.1}, {"logme": None}]
    assert sorted(entries, key=lambda e: _order(e, "logme")) == [
        {"logme": -0.1},
        {"logme": -0.3},
        {"logme": None},
    ]


def test_prefilter_needs_pt_sources_and_a_fixed_source_per_study(tmp_path):
    with pytest.raises(ValidationError, match="give pt_sources"):
        fake_spec(tmp_path, pt_sources=[], search={"prefilter": {"keep": 1}})
    with pytest.raises(ValidationError, match="optuna_axes"):
        fake_spec(
            tmp_path,
            search={
                "algorithm": "optuna",
                "optuna_axes": ["pt_source", "lr"],
                "prefilter": {"keep": 1},
            },
        )
    with pytest.raises(ValidationError, match="kept"):
        fake_spec(tmp_path, search={"prefilter": {"keep": 1, "kept": 2}})
    with pytest.raises(ValidationError, match="keep"):
        fake_spec(tmp_path, search={"prefilter": {"keep": 0}})


def test_the_real_scorer_ranks_on_fine_tunings_sample(tmp_path, local_ray):
    """Real jobs and the real scorer (tiny ALIGNN, generated crystals): the ranking is scored
    on the very structures the kept source's first seed fine-tunes on (test part held out)."""
    from tests.search.conftest import REPO
    from tlsearch.search.plan.spec import load_spec

    spec = load_spec(
        REPO / "search_spaces" / "quickstart.yaml",
        {
            "storage": str(tmp_path / "results"),
            "datasets": {
                "source": {"data": "generated:60:11"},
                "other": {"data": "generated:60:14"},
                "target": {"data": "generated:50:12", "test_fraction": 0.2},
            },
            "pt_sources": ["source", "other"],
            "pt_sizes": [None],
            "ft_sizes": [24],
            "scratch": False,
            "strategies": ["last_layer"],
            "seeds": [0, 1],
            "train": {"epochs": 2, "batch_size": 8, "early_stopping_patience": None},
            "pretrain": {"train": {"epochs": 2}},
            "search": {"prefilter": {"keep": 1}},
        },
    )
    status = run_search(spec, verbose=0)
    assert status.counts == {"ok": 2, "skipped": 2} and status.pretrain_counts == {"ok": 2}
    (path,) = (tmp_path / "results" / "quickstart" / "prefilter").glob("*.json")
    ranking = json.loads(path.read_text())
    assert all(m["probe_mae"] > 0 and m["n"] == 24 for m in ranking["models"])
    rows = RunStore.for_search(spec.storage, spec.name).rows()
    kept = [r for r in rows if r["status"] == "ok" and r["kind"] == "finetune"]
    assert {r["pt_source"] for r in kept} == set(ranking["kept"])
    first = next(r for r in kept if r["seed"] == 0)
    assert first["n_train"] + first["n_val"] == 24 and first["n_test"] == 10
