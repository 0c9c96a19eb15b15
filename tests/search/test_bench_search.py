"""``tlsearch bench search``'s counters, on a fake-job search: graph-cache hits and builds, PT
jobs trained vs reused vs requested, and a slot-second breakdown that adds up."""

from __future__ import annotations

import math
import time

import pytest

from tests.search.conftest import fake_spec
from tlsearch.bench.search import (
    graph_cache_stats,
    measure_search,
    pt_job_stats,
    trial_slots,
    tune_trial_times,
)
from tlsearch.results.store import RunStore
from tlsearch.search.plan.spec import SearchSpec
from tlsearch.search.run import driver
from tlsearch.search.run.rows import graph_cache_columns


def _spec(tmp_path, name: str) -> SearchSpec:
    """Target A (scratch + FT from B), 2 seeds: 4 seed-runs and 1 PT job; A and B differ."""
    data = fake_spec(tmp_path, name=name).model_dump()
    data["datasets"]["B"]["data"] += "&source=B"
    return SearchSpec.model_validate(data)


def _flatten(breakdown: dict) -> float:
    return sum(_flatten(v) if isinstance(v, dict) else v for v in breakdown.values())


def test_counters_and_breakdown_of_a_fake_search(tmp_path, local_ray):
    spec = _spec(tmp_path, "first")
    start = time.time()
    status = driver.run_search(spec, verbose=0)
    end = time.time()
    assert status.completed == 4
    rows = RunStore.for_search(spec.storage, spec.name).rows()
    assert all(r["wall_seconds"] is not None and r["wall_seconds"] >= 0 for r in rows)

    report = measure_search(
        tmp_path / "store" / "first",
        start=start,
        end=end,
        slots=2,
        phases=driver.LAST_PHASES,
        cache_dir=tmp_path / "store" / "graphs",
    )
    # PT job: B and B's test built; the first seed-run builds A and A's test; 3 seed-runs hit
    assert report["graph_cache"] == {
        "jobs_reporting": 5,
        "jobs_that_built": 2,
        "hits": 6,
        "misses": 4,
        "hit_rate": 0.6,
        "entries": 4,
        "redundant_builds": 0,
        "goal_met": True,
    }
    assert report["pt_jobs"] == {
        "requested": 1, "trained": 1, "reused": 0, "failed": 0, "goal_met": True,
    }  # fmt: skip
    assert report["train_seconds_sum"] == pytest.approx(5 * 0.01)
    assert report["overhead"] == pytest.approx(1 - 0.05 / (2 * (end - start)))
    # one experiment: the PT job first, then the 4 seed-runs, one trial each (an FT one waits
    # for the PT job if it starts first); no separate PT experiment, no rows read back
    assert (report["rows"], report["seed_runs"], report["trials"]) == (5, 4, 5)
    trials = tune_trial_times(tmp_path / "store" / "first" / "tune")
    assert {trials[r["trial_id"]]["experiment"] for r in rows} == {"main"}
    breakdown = report["breakdown_slot_seconds"]
    assert set(breakdown["outside_trials"]) == {"main"}
    parts = _flatten(breakdown) - breakdown["ray_start"]  # ray_start is part of before_search
    assert parts == pytest.approx(report["slot_seconds"], rel=1e-9)


def test_a_reused_pt_model_is_counted_as_reused(tmp_path):
    """Two searches sharing a storage: the second finds the PT model (no Ray needed)."""
    from tests.search.fakes import fake_job
    from tlsearch.jobs.identity import pretrain_key
    from tlsearch.search.plan.compile import compile_spec
    from tlsearch.search.plan.prepare import resolve_storage
    from tlsearch.search.run.trainable import TrialEnv, ensure_pt_row

    rows = []
    for name in ("first", "second"):
        spec = resolve_storage(_spec(tmp_path, name), str(tmp_path))
        (job,) = compile_spec(spec, str(tmp_path)).pretrain_jobs
        env = TrialEnv(spec=spec, base_dir=str(tmp_path), pretrain_jobs={pretrain_key(job): job})
        row, _ = ensure_pt_row(env, job, fake_job, None)
        rows.append(RunStore.for_search(spec.storage, name).read_row(row["run_id"]))
    first, second = rows
    assert first["pt_cache_hit"] is False and second["pt_cache_hit"] is True
    assert (first["graph_cache_hits"], first["graph_cache_misses"]) == (0, 2)
    assert (second["graph_cache_hits"], second["graph_cache_misses"]) == (0, 0)
    assert first["wall_seconds"] >= 0 and second["wall_seconds"] >= 0
    assert pt_job_stats([second], {"planned_pretrain_jobs": 1})["reused"] == 1


def test_counters_from_rows():
    assert graph_cache_columns({"graph_cache_hit": {"train": True, "test": False}}) == {
        "graph_cache_hits": 1,
        "graph_cache_misses": 1,
    }
    assert graph_cache_columns({"graph_cache_hit": True})["graph_cache_hits"] == 1
    assert graph_cache_columns({})["graph_cache_hits"] is None
    rows = [
        {"kind": "pretrain", "status": "ok", "pt_cache_hit": False,
         "graph_cache_hits": 0, "graph_cache_misses": 2},
        {"kind": "pretrain", "status": "ok", "pt_cache_hit": True,
         "graph_cache_hits": 0, "graph_cache_misses": 0},
        {"kind": "pretrain", "status": "failed", "pt_cache_hit": False,
         "graph_cache_hits": None, "graph_cache_misses": None},
        {"kind": "scratch", "status": "ok", "graph_cache_hits": 1, "graph_cache_misses": 1},
        {"kind": "scratch", "status": "ok", "graph_cache_hits": 2, "graph_cache_misses": 0},
    ]  # fmt: skip
    assert pt_job_stats(rows, {"planned_pretrain_jobs": 3}) == {
        "requested": 3, "trained": 1, "reused": 1, "failed": 1, "goal_met": False,
    }  # fmt: skip
    stats = graph_cache_stats(rows, None)
    assert (stats["hits"], stats["misses"], stats["jobs_that_built"]) == (3, 3, 2)
    assert stats["hit_rate"] == 0.5 and stats["redundant_builds"] is None


def test_trial_slots():
    assert trial_slots({"CPU": 2.0}, 1, 0, None) == 2
    assert trial_slots({"CPU": 16.0, "GPU": 2.0}, 4, 1, None) == 2
    assert trial_slots({"CPU": 16.0}, 1, 0, 3) == 3
    assert trial_slots({"CPU": 1.0}, 2, 0, None) == 1
    assert not math.isnan(trial_slots({}, 1, 0, None))


@pytest.mark.parametrize("mode", ["ok", "baddata"])
def test_trials_needing_a_running_pt_job_wait_for_its_row(tmp_path, mode):
    """Three trials ask for one PT job at once (a merged experiment: FT trials may start
    while the PT trial trains): it runs once, its row is the trainer's (not a cache hit), and
    a failed PT job is not retried by the waiters."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.search.conftest import executions
    from tests.search.fakes import fake_job
    from tlsearch.jobs.identity import pretrain_key
    from tlsearch.search.plan.compile import compile_spec
    from tlsearch.search.plan.prepare import resolve_storage
    from tlsearch.search.run.trainable import TrialEnv, ensure_pt_row

    data = _spec(tmp_path, "first").model_dump()
    data["datasets"]["B"]["data"] = f"fake://{mode}?log={{log}}&sleep=0.5&source=B"
    spec = resolve_storage(SearchSpec.model_validate(data), str(tmp_path))
    (job,) = compile_spec(spec, str(tmp_path)).pretrain_jobs
    env = TrialEnv(spec=spec, base_dir=str(tmp_path), pretrain_jobs={pretrain_key(job): job})
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: ensure_pt_row(env, job, fake_job, None), range(3)))
    assert len([line for line in executions(tmp_path) if '"pretrain"' in line]) == 1
    assert len({row["run_id"] for row, _ in results}) == 1
    row = RunStore.for_search(spec.storage, spec.name).read_row(results[0][0]["run_id"])
    if mode == "ok":
        assert row["status"] == "ok" and row["pt_cache_hit"] is False
        assert all(pretrained is not None for _, pretrained in results)
    else:
        assert row["status"] == "failed"
        assert all(pretrained is None for _, pretrained in results)


def test_address_is_passed_to_the_search(tmp_path, monkeypatch):
    """``--address auto`` measures a search on a running Ray (no start-up in the wall time)."""
    from tlsearch.bench import search as bench_search

    seen = []

    def fake_search(argv):
        seen.append(argv)
        raise KeyboardInterrupt  # stop before measuring

    argv = ["--storage", str(tmp_path / "s"), "--address", "auto", "--no-plot"]
    with pytest.raises(KeyboardInterrupt):
        bench_search.main(argv, search_command=fake_search)
    assert seen[0][-3:] == ["--no-plot", "--address", "auto"]
