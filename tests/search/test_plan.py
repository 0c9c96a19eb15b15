"""The compiled plan: one frozen, typed record per seed-run holding its whole job, stored as
``plan.json``; trials execute the record (no Ray started here)."""

from __future__ import annotations

import json

import pydantic
import pytest

from tests.search.conftest import REPO, fake_spec
from tlsearch.search.plan.compile import compile_plan, compile_spec
from tlsearch.search.plan.points import Point, resolve_datasets
from tlsearch.search.plan.prepare import resolve_storage
from tlsearch.search.plan.records import Plan
from tlsearch.search.plan.spec import load_spec
from tlsearch.search.run.driver import write_plan
from tlsearch.search.run.trainable import TrialEnv, run_seed

QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"


def _plan(spec, base: str) -> Plan:
    spec = resolve_storage(spec, base)
    return compile_plan(compile_spec(spec, base), resolve_datasets(spec, base), base)


def test_one_record_per_seed_run_with_its_whole_job(tmp_path):
    plan = _plan(load_spec(QUICKSTART), str(tmp_path))
    assert len(plan.seed_runs) == plan.planned_seed_runs == 30
    assert len({r.run_id for r in plan.seed_runs}) == 30
    (pt,) = plan.pretrain_jobs
    for record in plan.seed_runs:
        assert record.run_id == f"{record.config_hash}-s{record.seed}"
        assert record.job.seed == record.seed and record.job.data.name == "target"
        assert record.job.data.size == record.point.ft_size
        assert record.job.train["learning_rate"] == record.point.lr
        assert record.job.model == {"alignn_layers": 2, "gcn_layers": 2, "hidden_features": 32,
                                    "embedding_features": 32}  # fmt: skip
        if record.point.kind == "scratch":
            assert record.job.kind == "scratch" and record.pretrain is None
        else:
            assert record.job.kind == "finetune" and record.job.strategy == record.point.strategy
            assert record.pretrain == pt and pt.job.data.size == 240
            assert record.job.pretrained is None  # the PT model's path: known when it exists


def test_plan_json_round_trips_and_refuses_unknown_keys(tmp_path):
    spec = resolve_storage(load_spec(QUICKSTART), str(tmp_path))
    plan = _plan(spec, str(tmp_path))
    write_plan(str(tmp_path / "s"), spec, plan)
    text = (tmp_path / "s" / "plan.json").read_text()
    assert Plan.model_validate_json(text) == plan
    stored = json.loads(text)
    assert stored["planned_seed_runs"] == 30 and stored["planned_pretrain_jobs"] == 1
    with pytest.raises(pydantic.ValidationError, match="extra"):
        Plan.model_validate({**stored, "surprise": 1})
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        plan.seed_runs[0].seed = 3


def test_a_plan_json_written_before_records_reads_as_an_empty_plan():
    text = REPO / "tests" / "fixtures" / "main_search" / "quickstart-smoke" / "plan.json"
    plan = Plan.model_validate_json(text.read_text())
    assert (plan.planned_seed_runs, plan.seed_runs, plan.pretrain_jobs) == (2, [], [])


def test_a_trial_executes_the_plans_record(tmp_path):
    spec = resolve_storage(fake_spec(tmp_path, pt_sources=[], scratch=True), str(tmp_path))
    plan = _plan(spec, str(tmp_path))
    record = plan.seed_runs[0]
    changed = record.model_copy(
        update={"job": record.job.model_copy(update={"train": {**record.job.train, "epochs": 99}})}
    )
    env = TrialEnv(spec=resolve_datasets(spec, str(tmp_path)), base_dir=str(tmp_path),
                   seed_runs={record.run_id: changed})  # fmt: skip
    seen = []

    def job_fn(job, workdir):
        seen.append(job)
        return {"val": {"mae": 0.1}, "test": {"mae": 0.1}}

    row = run_seed(env, Point(**record.point.__dict__), record.seed, job_fn, None)
    assert row["run_id"] == record.run_id and row["status"] == "ok"
    assert [job.train["epochs"] for job in seen] == [99]  # the record's job, not a rebuilt one
