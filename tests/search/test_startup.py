"""Driver start-up: Ray's local start, Tune's loggers (CSV + JSON always, TensorBoard on
request) and a driver that never imports torch."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

from tests.search.conftest import REPO, fake_spec, fake_spec_data
from tlsearch.search.driver import run_search
from tlsearch.search.startup import (
    AUTO_LOGGERS_ENV,
    explicit_loggers_only,
    has_explicit_loggers,
    tune_callbacks,
)


def _tune_files(tmp_path, pattern: str) -> list:
    return sorted((tmp_path / "store" / "fake" / "tune").glob(f"*/*/{pattern}"))


def test_tensorboard_logs_only_on_request(tmp_path, local_ray):
    run_search(fake_spec(tmp_path, seeds=[0]), verbose=0)
    assert _tune_files(tmp_path, "result.json") and _tune_files(tmp_path, "progress.csv")
    assert not _tune_files(tmp_path, "events.out.tfevents*")
    assert os.environ.get(AUTO_LOGGERS_ENV) is None  # the driver's environment is restored

    other = tmp_path / "tb"
    run_search(fake_spec(other, seeds=[0], tensorboard=True), verbose=0)
    assert _tune_files(other, "events.out.tfevents*") and _tune_files(other, "result.json")


def test_logger_helpers():
    names = [type(c).__name__ for c in tune_callbacks(False)]
    assert names == ["CSVLoggerCallback", "JsonLoggerCallback"]
    assert type(tune_callbacks(True)[-1]).__name__ == "TBXLoggerCallback"

    os.environ[AUTO_LOGGERS_ENV] = "0"
    try:
        with explicit_loggers_only():
            assert os.environ[AUTO_LOGGERS_ENV] == "1"
        assert os.environ[AUTO_LOGGERS_ENV] == "0"
    finally:
        del os.environ[AUTO_LOGGERS_ENV]
    with explicit_loggers_only(active=False):
        assert AUTO_LOGGERS_ENV not in os.environ

    def tuner(callbacks):
        config = SimpleNamespace(callbacks=callbacks)
        return SimpleNamespace(_local_tuner=SimpleNamespace(get_run_config=lambda: config))

    assert has_explicit_loggers(tuner(tune_callbacks(False)))
    assert not has_explicit_loggers(tuner(None))  # an experiment from before: Tune's defaults
    assert not has_explicit_loggers(SimpleNamespace())  # Ray Client: no local tuner


def test_a_search_driver_never_imports_torch(tmp_path, local_ray):
    """The driver only schedules: a whole search (fake jobs, on the session's Ray) must not
    import torch in the driver process (Tune's TensorBoardX logger used to: seconds of
    critical path before the first trial)."""
    import json

    import ray

    spec = json.dumps(fake_spec_data(tmp_path, seeds=[0]))
    code = (
        "import json, sys, ray\n"
        f"ray.init(address={ray.get_runtime_context().gcs_address!r}, "
        f"runtime_env={{'env_vars': {{'PYTHONPATH': {str(REPO)!r}}}}})\n"
        "from tlsearch.search.driver import run_search\n"
        "from tlsearch.search.spec import SearchSpec\n"
        f"status = run_search(SearchSpec.model_validate(json.loads({spec!r})), verbose=0)\n"
        "assert status.completed == status.planned > 0, status\n"
        "sys.exit('torch imported' if 'torch' in sys.modules else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def test_a_local_ray_starts_without_idle_workers(monkeypatch):
    """A local start asks Ray for no prestarted workers (Tune never uses them); joining a
    cluster leaves its settings alone; the driver's environment is restored either way."""
    import ray

    from tlsearch.search import driver

    seen = []
    name = next(iter(driver.NO_PRESTART_ENV))

    def fake_init(address=None):
        seen.append((address, os.environ.get(name)))
        return SimpleNamespace(dashboard_url=None)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    monkeypatch.delenv(name, raising=False)
    driver.connect(None)
    driver.connect("auto")
    assert seen == [(None, "0"), ("auto", None)]
    assert name not in os.environ


def _search_command(monkeypatch, tmp_path, ray_up_before: bool) -> list:
    """Run ``tlsearch search`` with fakes for Ray and the search; returns what happened."""
    import threading

    import ray
    import yaml

    from tlsearch.search import cli, driver, status

    events: list = []
    state = {"up": ray_up_before}

    def fake_run_search(spec, **kwargs):
        state["up"] = True  # connected or started
        return SimpleNamespace(search_dir=str(tmp_path), completed=1)

    def fake_shutdown():
        events.append(("shutdown", threading.current_thread() is threading.main_thread()))
        state["up"] = False

    def fake_format(status_):
        events.append(("status", state["up"]))
        return "table"

    monkeypatch.setattr(ray, "is_initialized", lambda: state["up"])
    monkeypatch.setattr(ray, "shutdown", fake_shutdown)
    monkeypatch.setattr(driver, "run_search", fake_run_search)
    monkeypatch.setattr(status, "format_status", fake_format)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(fake_spec_data(tmp_path)))
    assert cli.main(["search", str(spec), "--no-plot"]) == 0
    events.append(("returned", state["up"]))
    return events


def test_the_search_command_stops_the_ray_it_started_while_it_prints(monkeypatch, tmp_path):
    """Ray's shutdown (mostly waiting for its processes) runs in a thread beside the status
    table and plot, and has finished when the command returns."""
    events = _search_command(monkeypatch, tmp_path, ray_up_before=False)
    assert ("shutdown", False) in events  # not on the main thread
    assert events[-1] == ("returned", False)
    assert sum(name == "shutdown" for name, _ in events) == 1


def test_the_search_command_leaves_a_running_ray_alone(monkeypatch, tmp_path):
    events = _search_command(monkeypatch, tmp_path, ray_up_before=True)
    assert events == [("status", True), ("returned", True)]
