"""DDP PT trials run only as many at once as their workers leave room for."""

from __future__ import annotations

import logging

from tests.search.conftest import REPO
from tlsearch.search.plan.compile import ExperimentPlan
from tlsearch.search.plan.rehearse import rehearsal_spec
from tlsearch.search.plan.spec import load_spec
from tlsearch.search.run.ddp_limits import ddp_job_needs, ddp_trial_limit
from tlsearch.search.run.driver import PRETRAIN_EXPERIMENT, experiment_concurrency


def _pt_size(**over):
    return load_spec(REPO / "search_spaces" / "pt_size.yaml", over)


def test_pt_size_rehearsal_on_two_cpus_runs_one_ddp_job_at_a_time():
    spec = rehearsal_spec(_pt_size())  # 4 workers x 0.25 CPU + a 0.25-CPU trial
    assert ddp_job_needs(spec) == {"CPU": 1.25, "GPU": 0.0}
    # Tune alone would start 8 trials of 0.25 CPU: no worker group could ever start
    assert ddp_trial_limit(spec, {"CPU": 2.0}) == 1
    assert ddp_trial_limit(spec, {"CPU": 16.0}) == 12


def test_gpu_jobs_are_limited_by_gpus_and_by_max_concurrent():
    spec = _pt_size()  # 4 workers x (4 CPU, 1 GPU) + a 1-CPU trial
    assert ddp_trial_limit(spec, {"CPU": 64.0, "GPU": 8.0}) == 2
    capped = _pt_size(max_concurrent=1)
    assert ddp_trial_limit(capped, {"CPU": 64.0, "GPU": 8.0}) == 1


def test_a_job_larger_than_the_cluster_waits_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert ddp_trial_limit(_pt_size(), {"CPU": 8.0, "GPU": 1.0}) == 1
    assert "needs 4.00 GPU" in caplog.text and "the cluster has 1.00" in caplog.text


def test_single_worker_pt_and_other_experiments_keep_max_concurrent(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    quick = load_spec(REPO / "search_spaces" / "quickstart.yaml")
    assert ddp_trial_limit(quick, {"CPU": 2.0}) is None
    pt = ExperimentPlan(PRETRAIN_EXPERIMENT, "grid", [0])
    main = ExperimentPlan("main", "grid", [0])
    rehearsal = rehearsal_spec(_pt_size())
    assert experiment_concurrency(pt, rehearsal) == 1
    assert experiment_concurrency(main, rehearsal) is None
    assert experiment_concurrency(pt, quick) is None
