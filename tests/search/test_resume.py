"""``--resume`` safety: a changed spec or changed data is refused (and shown) unless
``--allow-changed-spec``; run settings may change; ``max_concurrent`` holds on restore."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.search.conftest import fake_spec
from tlsearch.results.store import RunStore
from tlsearch.search.plan.compile import compile_plan, compile_spec, is_pretrain_point
from tlsearch.search.plan.points import Point, config_hash, resolve_datasets
from tlsearch.search.plan.prepare import resolve_storage
from tlsearch.search.plan.spec import SearchSpec
from tlsearch.search.run import driver
from tlsearch.search.run.resume import SpecChangedError, concurrency_slot


class ConnectedError(Exception):
    """Raised instead of connecting to Ray: the resume checks let the search go on."""


@pytest.fixture
def no_ray(monkeypatch):
    def connect(address):
        raise ConnectedError

    monkeypatch.setattr(driver, "connect", connect)


def started(spec: SearchSpec, tmp_path: Path, tune_state: bool = False) -> Path:
    """A search folder as ``spec``'s first run leaves it: plan, spec and every seed-run row."""
    spec = resolve_storage(spec, str(tmp_path))
    plan = compile_spec(spec, str(tmp_path))
    folder = Path(spec.storage) / spec.name
    trial_spec = resolve_datasets(spec, str(tmp_path))
    driver.write_plan(str(folder), spec, compile_plan(plan, trial_spec, str(tmp_path)))
    store = RunStore(folder / "runs")
    for raw in plan.experiments[0].points:
        if is_pretrain_point(raw):
            continue
        point = Point.from_config(raw, spec)
        digest = config_hash(trial_spec, point)
        store.write(
            {
                "run_id": f"{digest}-s{raw['seed']}",
                "config_hash": digest,
                "seed": raw["seed"],
                "kind": point.kind,
                "ft_target": point.target,
                "ft_size": point.ft_size,
                "pt_source": point.pt_source,
                "pt_size": point.pt_size,
                "strategy": point.strategy,
                "sampling": point.sampling,
                "lr": point.lr,
                "status": "ok",
            }
        )
    if tune_state:  # what Tuner.can_restore looks for
        (folder / "tune" / "main").mkdir(parents=True)
        (folder / "tune" / "main" / "tuner.pkl").write_bytes(b"")
    return folder


def resume(spec: SearchSpec, tmp_path: Path, **kwargs):
    return driver.run_search(spec, resume=True, base_dir=str(tmp_path), verbose=0, **kwargs)


def test_a_changed_spec_is_refused_and_the_difference_shown(tmp_path, no_ray):
    folder = started(fake_spec(tmp_path), tmp_path)
    plan_before = (folder / "plan.json").read_text()
    changed = fake_spec(tmp_path, train={"epochs": 7}, seeds=[0, 1])
    with pytest.raises(SpecChangedError) as info:
        resume(changed, tmp_path)
    message = str(info.value)
    assert "train.epochs: unset -> 7" in message
    assert "4 of 4 recorded seed-run(s) would run again" in message
    assert "--allow-changed-spec" in message
    assert (folder / "plan.json").read_text() == plan_before  # nothing overwritten
    with pytest.raises(ConnectedError):  # the spec it started with resumes
        resume(fake_spec(tmp_path), tmp_path)


def test_changed_data_under_the_same_spec_is_refused(tmp_path, no_ray):
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "a.json").write_text("version 1")
    spec = fake_spec(
        tmp_path,
        vars={"log": str(tmp_path / "log"), "paper": str(paper)},
        datasets=None,
        pt_sources=[],
        scratch=True,
    )
    spec = spec.model_copy(
        update={"datasets": {"A": spec.datasets["A"].model_copy(update={"data": "{paper}/a.json"})}}
    )
    started(spec, tmp_path)
    (paper / "a.json").write_text("version 2")
    with pytest.raises(SpecChangedError, match="spec is the same, so the data files"):
        resume(spec, tmp_path)


def test_run_settings_may_change_on_resume(tmp_path, no_ray):
    started(fake_spec(tmp_path), tmp_path)
    settings = fake_spec(
        tmp_path, max_concurrent=1, max_failures=5, description="later", resources={"cpu": 2}
    )
    with pytest.raises(ConnectedError):
        resume(settings, tmp_path)


def test_allow_changed_spec_resumes_and_keeps_the_spec_it_started_with(tmp_path, no_ray):
    folder = started(fake_spec(tmp_path), tmp_path)
    original = (folder / "spec.yaml").read_text()
    with pytest.raises(ConnectedError):
        resume(fake_spec(tmp_path, train={"epochs": 7}), tmp_path, allow_changed_spec=True)
    kept = list(folder.glob("spec.*Z.yaml"))
    assert len(kept) == 1 and kept[0].read_text() == original
    assert len(list(folder.glob("plan.*Z.json"))) == 1


def test_changed_configurations_of_a_started_experiment_are_refused_even_when_allowed(
    tmp_path, no_ray
):
    started(fake_spec(tmp_path), tmp_path, tune_state=True)
    more = fake_spec(tmp_path, lr=[1e-3, 1e-2])
    with pytest.raises(SpecChangedError, match=r"main: 4 configuration\(s\) added, 0 removed"):
        resume(more, tmp_path, allow_changed_spec=True)


def test_the_cli_has_the_switch():
    import argparse

    from tlsearch.cli.search import add_search_parser

    parser = argparse.ArgumentParser()
    add_search_parser(parser.add_subparsers())
    args = parser.parse_args(["search", "x.yaml", "--resume", "--allow-changed-spec"])
    assert args.allow_changed_spec and args.resume


# --- max_concurrent on restore -------------------------------------------------------------


def restored_tuner(search_alg=None, max_concurrent_trials=4):
    from ray import tune

    config = tune.TuneConfig(search_alg=search_alg, max_concurrent_trials=max_concurrent_trials)
    return SimpleNamespace(_local_tuner=SimpleNamespace(_tune_config=config))


def test_a_restored_grid_gets_the_limit_of_now():
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from tlsearch.search.run.restore_limits import cap_restored

    tuner = restored_tuner()
    cap_restored(tuner, 1)
    config = tuner._local_tuner._tune_config
    saved = BasicVariantGenerator(max_concurrent=4)  # the state Tune restores
    config.search_alg.set_state(saved.get_state())
    assert config.search_alg.max_concurrent == 1 and config.max_concurrent_trials is None
    cap_restored(tuner, None)
    assert tuner._local_tuner._tune_config.search_alg.max_concurrent == 0  # no limit


def test_a_restored_optuna_search_gets_the_limit_of_now():
    from ray.tune.search.concurrency_limiter import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from tlsearch.search.run.restore_limits import cap_restored

    optuna = OptunaSearch()
    tuner = restored_tuner(search_alg=optuna)
    cap_restored(tuner, 2)
    limiter = tuner._local_tuner._tune_config.search_alg
    assert type(limiter).__name__ == "ConcurrencyLimiter"  # Tune finds its saved state by name
    limiter.set_state(ConcurrencyLimiter(OptunaSearch(), max_concurrent=5).get_state())
    assert limiter.max_concurrent == 2 and limiter.searcher is optuna
    driver.check_searcher(tuner, SimpleNamespace(algorithm="optuna", name="optuna-x"))


def test_a_slot_is_held_by_one_trial_at_a_time(tmp_path):
    events = []

    def trial(name):
        with concurrency_slot(tmp_path, 1, poll_s=0.02):
            events.append(("start", name))
            time.sleep(0.3)
            events.append(("end", name))

    threads = [threading.Thread(target=trial, args=(n,)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e[0] for e in events] == ["start", "end", "start", "end"]


def timed_job(job, workdir):
    """The fake job, logging when it ran (``<log>/intervals.log``)."""
    from urllib.parse import parse_qs, urlparse

    from tests.search.fakes import fake_job

    log = Path(parse_qs(urlparse(job.data.data).query)["log"][0])
    start = time.time()
    try:
        return fake_job(job, workdir)
    finally:
        with open(log / "intervals.log", "a") as fh:
            fh.write(json.dumps([start, time.time()]) + "\n")


def stop_after_first_trial(marker: Path):
    """A Tune callback stopping the driver once a trial has finished, as a crash would; once
    (Tune keeps callbacks in the state it restores)."""
    from ray.tune import Callback

    class Stop(Callback):
        def on_step_begin(self, iteration, trials, **info):
            if not marker.exists() and any(t.status == "TERMINATED" for t in trials):
                marker.write_text("stopped")
                raise RuntimeError("driver stops")

    return Stop()


def test_max_concurrent_holds_for_trials_pending_when_the_search_stopped(
    tmp_path, local_ray, monkeypatch
):
    over = {
        "datasets": None,
        "pt_sources": [],
        "scratch": True,
        "lr": [1e-4, 1e-3, 1e-2],
        "testing": {"job_fn": "tests.search.test_resume:timed_job"},
    }
    spec = fake_spec(tmp_path, **over)
    data = spec.datasets["A"].data + "&sleep=1"
    spec = spec.model_copy(
        update={"datasets": {"A": spec.datasets["A"].model_copy(update={"data": data})}}
    )
    stop = stop_after_first_trial(tmp_path / "stopped")
    monkeypatch.setattr(driver, "tune_callbacks", lambda tensorboard: [stop])
    with pytest.raises(Exception, match="driver stops"):
        driver.run_search(spec, verbose=0)
    monkeypatch.undo()
    log = tmp_path / "log" / "intervals.log"
    before = len(log.read_text().splitlines())
    assert before < 6
    capped = spec.model_copy(update={"max_concurrent": 1})
    status = driver.run_search(capped, resume=True, verbose=0)
    assert status.completed == 6
    later = sorted(json.loads(line) for line in log.read_text().splitlines()[before:])
    assert later, "nothing ran after the resume"
    assert all(b[0] >= a[1] for a, b in zip(later, later[1:])), later  # one at a time


def test_a_search_starts_by_tidying_its_run_log(tmp_path):
    """Temporary files of killed writers go (old-style ones matched runs/*.parquet), and rows
    of older schema versions are rewritten in the current one."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tlsearch.results.schema import RUN_SCHEMA

    runs = tmp_path / "s" / "runs"
    runs.mkdir(parents=True)
    for name in ("_tmp-0123.parquet", "_tmp-4567.parquet.part"):
        (runs / name).write_bytes(b"PAR1 half a file")
        os.utime(runs / name, (time.time() - 7200,) * 2)
    v1 = pa.schema([f for f in RUN_SCHEMA if f.name not in ("rehearsal", "data_note")])
    pq.write_table(pa.Table.from_pylist([{"run_id": "a-s0"}], schema=v1), runs / "a-s0.parquet")
    driver.tidy_run_log(str(tmp_path / "s"))
    assert sorted(os.listdir(runs)) == ["a-s0.parquet"]
    assert "data_note" in pq.read_schema(runs / "a-s0.parquet").names


def test_a_damaged_stored_spec_is_one_clear_error_naming_it(tmp_path, no_ray):
    folder = started(fake_spec(tmp_path), tmp_path)
    for text in ("name: fake\nseeds: [0, 1\n", "- just\n- a list\n"):
        (folder / "spec.yaml").write_text(text)
        with pytest.raises(ValueError, match=r"stored spec .*spec\.yaml is damaged") as info:
            resume(fake_spec(tmp_path), tmp_path)
        assert str(folder / "spec.yaml") in str(info.value)
