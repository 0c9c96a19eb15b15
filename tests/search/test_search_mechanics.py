"""The search on a local Ray with fake jobs: idempotence, retries, recorded failures,
divergence, PT failures, Optuna and its restore."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest

from tests.search.conftest import executions, fake_spec
from tlsearch.results.store import RunStore
from tlsearch.search.plan.compile import ExperimentPlan
from tlsearch.search.run.driver import SearchExistsError, check_searcher, run_search


def test_grid_search_records_every_seed_run_once(tmp_path, local_ray):
    spec = fake_spec(tmp_path, targets=["A", "B"], pt_sources=["A", "B"])
    status = run_search(spec, verbose=0)
    # 2 targets x (scratch + 1 source) x 2 seeds
    assert (status.planned, status.completed, status.failed, status.diverged) == (8, 8, 0, 0)
    assert status.remaining == 0 and status.duplicates == 0
    assert status.pretrain_counts == {"ok": 2}
    ran = executions(tmp_path)
    assert len(ran) == 8 + 2  # each PT job exactly once (PT phase, then the cache)
    assert max(Counter(ran).values()) == 1
    plan = json.loads((tmp_path / "store" / "fake" / "plan.json").read_text())
    assert plan["planned_seed_runs"] == 8

    with pytest.raises(SearchExistsError, match="--resume"):
        run_search(spec, verbose=0)
    again = run_search(spec, resume=True, verbose=0)
    assert again.completed == 8 and len(executions(tmp_path)) == len(ran)


@pytest.fixture(scope="module")
def failure_modes(tmp_path_factory, ray_session):
    """One search with a healthy, a flaky, a bad-data and a diverging target, and a PT source
    whose data is bad (so its FT seed-runs cannot run)."""
    tmp = tmp_path_factory.mktemp("failures")
    modes = {"OK": "ok", "FLAKY": "flaky", "BAD": "baddata", "NAN": "nan", "BADSRC": "baddata"}
    spec = fake_spec(
        tmp,
        datasets=modes,
        targets=["OK", "FLAKY", "BAD", "NAN"],
        pt_sources=["BADSRC"],
        pairs=[["BADSRC", "OK"]],
        max_failures=3,
    )
    status = run_search(spec, verbose=0)
    rows = RunStore.for_search(spec.storage, spec.name).rows()
    return SimpleNamespace(tmp=tmp, spec=spec, status=status, rows=rows)


def _rows(case, target, kind="scratch"):
    return [r for r in case.rows if r["ft_target"] == target and r["kind"] == kind]


def test_nothing_lost(failure_modes):
    status = failure_modes.status
    assert status.planned == 10  # (4 scratch + 1 transfer) x 2 seeds
    assert status.completed + status.failed + status.diverged == status.planned
    assert status.remaining == 0 and status.duplicates == 0


def test_a_run_that_raises_once_is_retried_and_completes(failure_modes):
    rows = _rows(failure_modes, "FLAKY")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    flaky = [line for line in executions(failure_modes.tmp) if '"FLAKY"' in line]
    assert sorted(Counter(flaky).values()) == [2, 2]  # each seed-run: one failure, one retry


def test_bad_data_is_recorded_as_failed_and_not_retried(failure_modes):
    rows = _rows(failure_modes, "BAD")
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(r["error"] == "ValueError: dataset BAD: structure 7 has no atoms" for r in rows)
    bad = [line for line in executions(failure_modes.tmp) if '"BAD"' in line]
    assert len(bad) == 2


def test_a_failed_pt_job_fails_its_ft_runs_once(failure_modes):
    pt = [r for r in failure_modes.rows if r["kind"] == "pretrain"]
    assert len(pt) == 1 and pt[0]["status"] == "failed" and "structure 7" in pt[0]["error"]
    ft = _rows(failure_modes, "OK", kind="finetune")
    assert [r["status"] for r in ft] == ["failed", "failed"]
    assert all(r["error"].startswith("PretrainUnavailableError: pre-training pt-") for r in ft)
    assert len([line for line in executions(failure_modes.tmp) if '"BADSRC"' in line]) == 1


def test_a_nan_run_is_diverged_and_never_best(failure_modes):
    from ray.tune import ExperimentAnalysis

    rows = _rows(failure_modes, "NAN")
    assert [r["status"] for r in rows] == ["diverged", "diverged"]
    assert all(r["val_mae"] is None for r in rows)
    path = f"{failure_modes.spec.storage}/{failure_modes.spec.name}/tune/main"
    analysis = ExperimentAnalysis(path, default_metric="val_mae", default_mode="min")
    reported = {
        t.config["point"]["target"]: t.last_result["val_mae"]
        for t in analysis.trials
        if t.config["point"].get("kind") == "scratch"  # not the PT trials (no metric)
    }
    assert reported["NAN"] == 1e6 and reported["BAD"] == 1e6
    assert analysis.best_config["point"]["target"] in {"OK", "FLAKY"}


def test_optuna_search_and_its_restore(tmp_path, local_ray):
    from ray.tune.search.optuna import OptunaSearch

    spec = fake_spec(
        tmp_path,
        datasets={"A": "ok", "B": "ok", "C": "ok"},
        pt_sources=["B", "C"],
        scratch=False,
        seeds=[0],
        strategies=["unfreeze_all", "last_layer"],
        lr={"loguniform": [1e-4, 1e-2]},
        search={
            "algorithm": "optuna",
            "num_samples": 3,
            "optuna_axes": ["pt_source", "strategy", "lr"],
        },  # fmt: skip
    )
    status = run_search(spec, verbose=0)
    assert status.planned == 3 and status.completed == 3
    ran = len(executions(tmp_path))

    restored = run_search(spec, resume=True, verbose=0)  # restores: the searcher is checked
    assert restored.completed == 3 and len(executions(tmp_path)) == ran
    cell = next((tmp_path / "store" / "fake" / "tune").glob("optuna-*"))
    searcher = OptunaSearch()
    searcher.restore_from_dir(str(cell))
    assert len(searcher._ot_study.trials) == 3  # Optuna saw every trial
    assert len(list(cell.glob("trial_*"))) == 3


def test_a_restore_without_optuna_is_refused():
    from ray.tune.search.basic_variant import BasicVariantGenerator

    tuner = SimpleNamespace(
        _local_tuner=SimpleNamespace(
            _tune_config=SimpleNamespace(search_alg=BasicVariantGenerator())
        )
    )
    experiment = ExperimentPlan("optuna-x", "optuna", [0], num_samples=2)
    with pytest.raises(RuntimeError, match="not OptunaSearch.*30861"):
        check_searcher(tuner, experiment)
    check_searcher(tuner, ExperimentPlan("main", "grid", [0]))  # grids need no Optuna


def test_asha_stops_configurations_after_fewer_seeds(tmp_path, local_ray):
    """ASHA over seeds: the PT job runs in its own experiment before the configurations (ASHA
    must only see configurations), at least one configuration runs every seed, some stop after
    the grace period, and no seed-run is recorded twice."""
    spec = fake_spec(
        tmp_path,
        strategies=["unfreeze_all", "last_layer", "new_head"],
        lr=[1e-3, 1e-2],
        seeds=[0, 1, 2, 3],
        search={"algorithm": "grid", "asha": {"grace_period": 1, "reduction_factor": 2}},
        max_concurrent=1,
    )
    status = run_search(spec, verbose=0)
    tune_dir = tmp_path / "store" / "fake" / "tune"
    assert sorted(p.name for p in tune_dir.iterdir()) == ["main", "pretrain"]
    rows = RunStore.for_search(spec.storage, spec.name).rows()
    seeds = Counter(r["config_hash"] for r in rows if r["kind"] != "pretrain")
    assert max(seeds.values()) == 4 and min(seeds.values()) < 4
    assert status.duplicates == 0 and status.failed == 0
    assert status.completed == sum(seeds.values()) < status.planned


def test_grid_trials_are_seed_runs(tmp_path, local_ray):
    """A plain grid experiment runs one trial per seed-run (plus the PT job's), each reporting
    its own metric."""
    from ray.tune import ExperimentAnalysis

    spec = fake_spec(tmp_path)  # target A: scratch + FT from B, 2 seeds
    status = run_search(spec, verbose=0)
    assert (status.planned, status.completed) == (4, 4)
    trials = ExperimentAnalysis(str(tmp_path / "store" / "fake" / "tune" / "main")).trials
    points = [t.config["point"] for t in trials]
    assert sum("pt_key" in p for p in points) == 1
    assert sorted((p["kind"], p["seed"]) for p in points if "seed" in p) == [
        ("finetune", 0), ("finetune", 1), ("scratch", 0), ("scratch", 1),
    ]  # fmt: skip
    assert all(t.last_result["seeds_done"] == 1 for t in trials if "seed" in t.config["point"])
    rows = RunStore.for_search(spec.storage, spec.name).rows()
    assert len({r["trial_id"] for r in rows}) == 5  # every row from its own trial


def test_a_search_started_with_one_trial_per_configuration_resumes(
    tmp_path, local_ray, monkeypatch
):
    """An experiment saved before grid trials became seed-runs restores with its own layout:
    ``--resume`` finishes it without reporting trials as missing."""
    from tlsearch.search.plan import compile as compile_module

    configuration_trials = compile_module.trial_points
    monkeypatch.setattr(
        compile_module, "trial_points", lambda p, s, per_seed: configuration_trials(p, s, False)
    )
    spec = fake_spec(tmp_path)
    assert run_search(spec, verbose=0).completed == 4
    ran = len(executions(tmp_path))
    monkeypatch.undo()
    again = run_search(spec, resume=True, verbose=0)
    assert again.completed == 4 and again.remaining == 0
    assert len(executions(tmp_path)) == ran


@pytest.mark.parametrize("max_failures", [2, 0])
def test_trials_tune_did_not_retry_are_run_again_within_max_failures(
    tmp_path, local_ray, monkeypatch, max_failures: int
):
    """Tune retries a failed trial only while it runs: one whose node dies while it starts ends
    errored at once (seen when a worker node was removed). Tune is made to retry nothing here,
    as for such trials: the driver runs them again, within the spec's ``max_failures``."""
    from ray import tune

    real = tune.FailureConfig
    monkeypatch.setattr(tune, "FailureConfig", lambda **kw: real(**{**kw, "max_failures": 0}))
    spec = fake_spec(tmp_path, datasets={"A": "flaky"}, pt_sources=[], max_failures=max_failures)
    status = run_search(spec, verbose=0)
    ran = Counter(executions(tmp_path))
    if max_failures:
        assert (status.planned, status.completed, status.remaining) == (2, 2, 0)
        assert sorted(ran.values()) == [2, 2]  # each seed-run: the failure, then once more
    else:  # no retries asked for: the errored trials stay for --resume
        assert (status.planned, status.completed, status.remaining) == (2, 0, 2)
        assert sorted(ran.values()) == [1, 1]
