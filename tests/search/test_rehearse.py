"""``--rehearse``: the whole plan of a spec at a size 2 CPUs finish, marked, kept apart."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.search.conftest import REPO
from tlsearch.analysis.frame import check_rehearsal
from tlsearch.search.plan.compile import compile_spec
from tlsearch.search.plan.points import build_job
from tlsearch.search.plan.prepare import apply_modes, first_seeds
from tlsearch.search.plan.rehearse import (
    REHEARSAL_EPOCHS,
    TINY_MODEL,
    rehearsal_spec,
    rehearsal_summary,
)
from tlsearch.search.plan.spec import load_spec
from tlsearch.search.run.trainable import Point

SPECS = ("hparam", "ft_size", "pt_size", "ft_strategy", "pairwise", "mpt", "ood_2d", "best_pair",
         "quickstart", "pairwise_cpu")  # fmt: skip


def _jobs(plan, spec):
    """(data, test, batch size, ft size, sampling, strategy) of every grid seed-run's job."""
    out = []
    for experiment in plan.experiments:
        for p in experiment.points:
            if "point" not in p:
                continue
            point = Point.from_config(p["point"], spec)
            for seed in [p["seed"]] if "seed" in p else experiment.seeds:
                job = build_job(spec, point, seed, str(REPO))
                out.append(
                    (job.data.data, job.data.test, job.train.get("batch_size"), job.data.size,
                     job.data.sampling, job.strategy, job.train.get("learning_rate"))
                )  # fmt: skip
    return sorted(out, key=str)


@pytest.mark.parametrize("name", SPECS)
def test_rehearsal_keeps_the_whole_plan(name, tmp_path):
    spec = load_spec(REPO / "search_spaces" / f"{name}.yaml", {"storage": str(tmp_path)})
    small = rehearsal_spec(spec)
    real, rehearsed = compile_spec(spec, str(REPO)), compile_spec(small, str(REPO))
    assert small.name == f"{name}-rehearsal" and small.rehearsal
    assert rehearsed.planned_seed_runs == real.planned_seed_runs
    assert [e.planned_trials for e in rehearsed.experiments] == [
        e.planned_trials for e in real.experiments
    ]
    assert len(rehearsed.pretrain_jobs) == len(real.pretrain_jobs)
    assert _jobs(rehearsed, small) == _jobs(real, spec)  # same files, sizes, batches, lr
    for job in rehearsed.pretrain_jobs:
        assert job.num_workers == spec.pretrain.num_workers  # DDP worker count kept
        assert job.gpus_per_worker == 0
        assert job.model == {**spec.model, **TINY_MODEL}
        assert job.train["epochs"] == REHEARSAL_EPOCHS
    assert small.resources.gpu == 0 and small.train["early_stopping_patience"] is None


def test_first_seeds_and_modes(tmp_path):
    spec = load_spec(REPO / "search_spaces" / "quickstart.yaml", {"storage": str(tmp_path)})
    assert first_seeds(spec, 1).seeds == [0]
    with pytest.raises(ValueError, match="at least 1"):
        first_seeds(spec, 0)
    both = apply_modes(spec, base_dir=str(REPO), rehearse=True, seeds=2)
    assert both.rehearsal and both.seeds == [0, 1] and not both.offline
    assert compile_spec(both).planned_seed_runs == 12


def test_summary_says_passed_or_failed():
    ok = [
        {"kind": "scratch", "status": "ok", "wall_seconds": 2.0, "run_id": "a"},
        {"kind": "finetune", "status": "ok", "wall_seconds": 4.0, "run_id": "b"},
        {"kind": "pretrain", "status": "ok", "wall_seconds": 9.0, "run_id": "pt"},
    ]
    text = rehearsal_summary(ok, planned=2)
    assert text.startswith("rehearsal PASSED: planned 2 seed-runs, completed 2")
    assert "median 3.0, max 4.0" in text and "median 9.0" in text
    bad = [*ok, {"kind": "scratch", "status": "failed", "run_id": "c", "error": "no file x"}]
    text = rehearsal_summary(bad, planned=3)
    assert text.startswith("rehearsal FAILED") and "failed: c: no file x" in text
    assert rehearsal_summary(ok, planned=5).startswith("rehearsal FAILED")
    skipped = [*ok, {"kind": "finetune", "status": "skipped", "run_id": "d", "error": "rank 2"}]
    text = rehearsal_summary(skipped, planned=3)  # search.prefilter skipped one: not a failure
    assert text.startswith("rehearsal PASSED: planned 3 seed-runs, completed 2, skipped 1, ")


def test_a_rehearsal_ranks_but_keeps_every_pt_model(tmp_path):
    spec = load_spec(
        REPO / "search_spaces" / "rank_check_cpu.yaml",
        {"storage": str(tmp_path), "search": {"prefilter": {"keep": 2, "by": "logme"}}},
    )
    small = rehearsal_spec(spec).search.prefilter
    assert small is not None and small.keep == 6 and small.by == "logme"


def test_analysis_refuses_to_mix_rehearsal_rows():
    mixed = pd.DataFrame(
        {"rehearsal": [True, None, False], "search_dir": ["r/x-rehearsal", "r/x", "r/x"]}
    )
    with pytest.raises(ValueError, match=r"1 rehearsal row\(s\) \(from r/x-rehearsal\)"):
        check_rehearsal(mixed)
    assert check_rehearsal(mixed.iloc[:1]) is True
    assert check_rehearsal(mixed.iloc[1:]) is False
