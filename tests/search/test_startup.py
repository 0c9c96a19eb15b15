"""Driver start-up and shut-down: Ray's local start, Tune's loggers (CSV + JSON always,
TensorBoard on request), a driver that never imports torch, what a resume says, and the search
command's exit status and its stopping of Ray."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.search.conftest import REPO, fake_spec, fake_spec_data
from tlsearch.search.run.driver import run_search
from tlsearch.search.run.startup import (
    AUTO_LOGGERS_ENV,
    TUNE_ANALYSIS_LOGGER,
    explicit_loggers_only,
    has_explicit_loggers,
    quiet_pending_trials,
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
        "from tlsearch.search.run.driver import run_search\n"
        "from tlsearch.search.plan.spec import SearchSpec\n"
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

    from tlsearch.search.run import driver

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


def _status(tmp_path, **over) -> SimpleNamespace:
    values = {"search_dir": str(tmp_path), "completed": 1, "planned": 1, "remaining": 0}
    return SimpleNamespace(**{"duplicates": 0, **values, **over})


def _search_command(
    monkeypatch, tmp_path, ray_up_before: bool, outcome=None, expect: int = 0
) -> list:
    """Run ``tlsearch search`` with fakes for Ray (a local node: processes the command started)
    and the search; returns what happened. ``outcome``: the search's status or an exception."""
    import threading

    import ray
    import yaml
    from ray._private import worker as ray_worker

    from tlsearch.cli.main import main
    from tlsearch.search.run import driver
    from tlsearch.search.watch import status

    events: list = []
    state = {"up": ray_up_before}
    printed = threading.Event()

    class FakeNode:
        def is_head(self):
            return True

        def destroy_external_storage(self):
            pass

        def kill_all_processes(self, **kwargs):
            main = threading.current_thread() is threading.main_thread()
            # in a thread, it waits for the status table: both at once
            overlapped = printed.is_set() if main else printed.wait(timeout=10)
            events.append(("processes", main, overlapped))

    def fake_run_search(spec, **kwargs):
        if not state["up"]:
            monkeypatch.setattr(ray_worker, "_global_node", FakeNode())  # started a local Ray
        state["up"] = True
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome or _status(tmp_path)

    def fake_shutdown():
        node = ray_worker._global_node
        events.append(("disconnect", threading.current_thread() is threading.main_thread()))
        if node is not None:  # what ray.shutdown() would do with the processes
            node.kill_all_processes()
            monkeypatch.setattr(ray_worker, "_global_node", None)
        state["up"] = False

    def fake_format(status_):
        events.append(("status", state["up"]))
        printed.set()
        return "table"

    monkeypatch.setattr(ray_worker, "_global_node", None)
    monkeypatch.setattr(ray, "is_initialized", lambda: state["up"])
    monkeypatch.setattr(ray, "shutdown", fake_shutdown)
    monkeypatch.setattr(driver, "run_search", fake_run_search)
    monkeypatch.setattr(status, "format_status", fake_format)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(fake_spec_data(tmp_path)))
    assert main(["search", str(spec), "--no-plot"]) == expect
    events.append(("returned", state["up"]))
    return events


def test_the_search_command_stops_the_ray_it_started_while_it_prints(monkeypatch, tmp_path):
    """The local Ray's processes exit (most of a shutdown) in a thread while the status table
    and plot are printed, and have exited when the command returns; the core worker is
    destroyed on the main thread before it prints anything."""
    events = _search_command(monkeypatch, tmp_path, ray_up_before=False)
    assert events == [
        ("disconnect", True),
        ("status", False),
        ("processes", False, True),
        ("returned", False),
    ]


def test_the_search_command_leaves_a_running_ray_alone(monkeypatch, tmp_path):
    events = _search_command(monkeypatch, tmp_path, ray_up_before=True)
    assert events == [("status", True), ("returned", True)]


def test_an_incomplete_search_exits_non_zero_with_the_reason_last(monkeypatch, tmp_path, capfd):
    from tlsearch.cli.search import EXIT_INCOMPLETE

    status = _status(tmp_path, planned=4, completed=2, remaining=2)
    _search_command(monkeypatch, tmp_path, False, outcome=status, expect=EXIT_INCOMPLETE)
    last = capfd.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("tlsearch: search incomplete: 2 of 4 planned seed-run(s) have no row")

    _search_command(monkeypatch, tmp_path, False, _status(tmp_path, duplicates=1), EXIT_INCOMPLETE)
    assert "1 duplicate run_id row(s)" in capfd.readouterr().err.strip().splitlines()[-1]


def test_a_failed_search_stops_ray_before_its_error_line(monkeypatch, tmp_path, capfd):
    """The reason is the last line: Ray is stopped (on the main thread) before it is written."""
    from tlsearch.search.run.driver import SearchInterruptedError

    events = _search_command(
        monkeypatch, tmp_path, False, outcome=SearchInterruptedError("stopped"), expect=130
    )
    assert events == [("disconnect", True), ("processes", True, False), ("returned", False)]
    assert capfd.readouterr().err.strip().splitlines()[-1] == "tlsearch: interrupted: stopped"

    events = _search_command(monkeypatch, tmp_path, False, outcome=ValueError("bad"), expect=2)
    assert events[0] == ("disconnect", True) and events[-1] == ("returned", False)
    assert capfd.readouterr().err.strip().splitlines()[-1] == "tlsearch: error: bad"


#: Cyclic garbage holding ObjectRefs (as Tune leaves behind) is collected on the main thread
#: while Ray stops: a collection during the core worker's teardown used to end the process with
#: exit code 1 ("The core worker has already been shutdown").
GARBAGE_DURING_SHUTDOWN = """
import gc, sys
import ray
from tlsearch.search.run.startup import stop_ray_in_background

ray.init(num_cpus=1, include_dashboard=False)

class Cycle:
    pass

def cycle():
    c = Cycle()
    c.self, c.ref = c, ray.put(1)
    return c

batches = [[cycle() for _ in range(2)] for _ in range(1000)]
gc.disable()
thread = stop_ray_in_background()
collections = 0
while thread is not None and thread.is_alive() and batches:
    batches.pop()  # cyclic garbage with ObjectRefs
    gc.collect()
    collections += 1
if thread is not None:
    thread.join()
print("collections", collections, "initialized", ray.is_initialized())
"""


def test_garbage_collected_while_ray_stops_does_not_kill_the_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", GARBAGE_DURING_SHUTDOWN],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    words = done.stdout.split()
    assert words[words.index("initialized") + 1] == "False"
    assert int(words[words.index("collections") + 1]) > 0  # it collected while Ray stopped


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines():
    """``(tune, tlsearch)``: what Tune's ExperimentAnalysis logger would print, and tlsearch's
    records at every level."""
    tune_logger = logging.getLogger(TUNE_ANALYSIS_LOGGER)
    ours = logging.getLogger("tlsearch")
    tune, mine, level = _Lines(), _Lines(), ours.level
    tune_logger.addHandler(tune)
    ours.addHandler(mine)
    ours.setLevel(logging.DEBUG)
    yield tune, mine
    tune_logger.removeHandler(tune)
    ours.removeHandler(mine)
    ours.setLevel(level)


def test_a_resume_says_what_it_found_and_not_that_unstarted_trials_have_no_metrics(
    tmp_path, local_ray, log_lines
):
    tune, mine = log_lines
    spec = fake_spec(tmp_path, seeds=[0])
    run_search(spec, verbose=0)
    # a trial without result files: what every trial not started when a search stopped is
    trial_dir = _tune_files(tmp_path, "result.json")[0].parent
    for name in ("result.json", "progress.csv"):
        (trial_dir / name).unlink()
    status = run_search(spec, verbose=0, resume=True)
    assert status.completed == status.planned == 2
    assert not [line for line in tune.lines if "Could not fetch metrics" in line], tune.lines
    assert (
        "resuming search fake: 2 seed-run(s) already recorded (ok 2), 0 to run; "
        "PT jobs: 1 of 1 recorded" in mine.lines
    )
    assert any("no result files for 1 trial(s)" in line for line in mine.lines)  # DEBUG, -v


def test_only_the_no_result_files_lines_are_hidden(log_lines):
    tune, _ = log_lines
    tune_logger = logging.getLogger(TUNE_ANALYSIS_LOGGER)
    missing = "- t1: FileNotFoundError('Could not fetch metrics for t1: both result.json ...')"
    broken = "- t2: JSONDecodeError('Expecting value: line 1 column 1 (char 0)')"
    with quiet_pending_trials():
        tune_logger.warning("Failed to fetch metrics for 1 trial(s):\n%s", missing)
        tune_logger.warning(f"Failed to fetch metrics for 2 trial(s):\n{missing}\n{broken}")
        tune_logger.warning("something else")
    assert tune.lines == [f"Failed to fetch metrics for 1 trial(s):\n{broken}", "something else"]
    tune_logger.warning("Failed to fetch metrics for 1 trial(s):\n%s", missing)  # outside: as is
    assert tune.lines[-1].endswith(missing)
