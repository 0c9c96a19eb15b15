"""The console of ``tlsearch search``: the quickstart's output is short and names every failure
with its reason; Tune's tables go to ``<search>/tune.log`` (and the console too with -v); the
pieces (row feed, counts, best configuration, failure lines) on hand-made rows."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

from tests.search.conftest import REPO, fake_spec_data
from tlsearch.cli.main import main as search_cli
from tlsearch.results.store import RunStore
from tlsearch.search.watch.console import ConsoleProgress, failure_line, is_live
from tlsearch.search.watch.monitor import RowFeed, SearchState, describe, trial_error_text
from tlsearch.search.watch.tune_output import ShortTrialFailures

QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"


def quickstart_with_a_failing_size(tmp_path: Path) -> Path:
    """The quickstart (6 configurations x 5 seeds + 1 PT job, 31 Tune trials) with a tiny model
    and data, one FT size larger than the target's pool: its scratch seed-runs fail for sure
    (ValueError: asked for 500 training structures), recorded as failed rows."""
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec.update(
        storage=str(tmp_path / "results"),
        datasets={
            "source": {"data": "generated:60:11"},
            "target": {"data": "generated:50:12", "test": "generated:16:13"},
        },
        pt_sizes=[48],
        ft_sizes=[16, 500],
        model={"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16,
               "embedding_features": 16},
        pretrain={"train": {"epochs": 1}},
    )  # fmt: skip
    spec["train"]["epochs"] = 1
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_quickstart_console_is_short_and_names_every_failure(tmp_path, local_ray, capfd):
    spec = quickstart_with_a_failing_size(tmp_path)
    assert search_cli(["search", str(spec), "--no-plot"]) == 0
    out, err = capfd.readouterr()
    console = (out + err).splitlines()
    assert len(console) < 60, "\n".join(console)
    search_dir = tmp_path / "results" / "quickstart"
    failed = [r for r in RunStore(search_dir / "runs").rows() if r["status"] == "failed"]
    assert len(failed) == 5
    for row in failed:
        assert any(
            row["run_id"] in line and "asked for 500 training structures" in line
            for line in console
        ), row["run_id"]
    assert "╭" not in out + err and "Trial status" not in out + err  # no Tune boxes here
    assert "Trial status: 31 TERMINATED" in (search_dir / "tune.log").read_text()
    assert "seed-runs 30/30" in err and "failed 5" in err  # the display's last line
    assert "planned 30, completed 25, failed 5, diverged 0, remaining 0" in out  # the table
    assert "unfreeze_all" in out and "last_layer" in out


def test_verbose_shows_tunes_tables_too(tmp_path, local_ray, capfd):
    spec = tmp_path / "fake.yaml"
    spec.write_text(yaml.safe_dump(fake_spec_data(tmp_path, seeds=[0])))
    assert search_cli(["search", str(spec), "--no-plot", "-v"]) == 0
    out, _ = capfd.readouterr()
    assert "Trial status" in out
    assert "Trial status" in (tmp_path / "store" / "fake" / "tune.log").read_text()


# --- pieces ---------------------------------------------------------------------------------


def _row(run_id, status="ok", value=0.5, config="c1", **over):
    row = {"run_id": run_id, "kind": "scratch", "status": status, "config_hash": config,
           "val_mae": value, "ft_target": "T", "ft_size": 40, "sampling": "random",
           "lr": 1e-3, "seed": 0, "error": None}  # fmt: skip
    row.update(over)
    return row


def test_row_feed_hands_each_row_out_once(tmp_path):
    store = RunStore(tmp_path / "runs")
    feed = RowFeed(str(tmp_path / "runs"))
    assert feed.new_rows() == []  # no folder yet
    store.write(_row("a-s0"))
    assert [r["run_id"] for r in feed.new_rows()] == ["a-s0"]
    (tmp_path / "runs" / "_tmp-x.parquet.part").write_bytes(b"half")
    store.write(_row("a-s1"))
    assert [r["run_id"] for r in feed.new_rows()] == ["a-s1"]
    assert feed.new_rows() == []


def test_best_configuration_skips_failed_ones_and_follows_the_mode():
    state = SearchState("s", "/x", planned=6, planned_pretrain=0)
    state.add([_row("a0", value=0.2, config="a"), _row("a1", "failed", None, config="a"),
               _row("b0", value=0.4, config="b"), _row("b1", value=0.6, config="b"),
               _row("c0", value=0.9, config="c", strategy="x", kind="finetune")])  # fmt: skip
    best = state.best()
    assert best is not None and (best.value, best.seeds) == (0.5, 2)
    assert "scratch T:40 random lr 0.001" in str(best)
    state.mode = "max"
    assert state.best().value == 0.9
    assert state.counts_text() == ("seed-runs 5/6, running 0, failed 1, diverged 0, PT jobs 0/0")
    state.add([_row("d0", "skipped", None, config="d", kind="finetune")])  # search.prefilter
    assert state.best().value == 0.9 and "skipped 1, PT jobs" in state.counts_text()


def test_failure_lines_name_the_run_and_its_reason():
    assert failure_line(_row("ok-s0")) is None
    line = failure_line(_row("a-s1", "failed", error="ValueError: bad\n  structure 7", seed=1))
    head = "FAILED seed-run a-s1 (scratch T:40 random lr 0.001, seed 1)"
    assert line == f"{head}: ValueError: bad structure 7"
    assert failure_line(_row("n-s0", "diverged")).endswith(": non-finite loss")
    pt = _row("pt-1", "failed", error="no data", kind="pretrain", pt_source="S", pt_size=None)
    assert failure_line(pt) == "FAILED PT job pt-1 (PT S:all): no data"
    assert describe({"kind": "finetune", "pt_source": "S", "pt_size": 8, "ft_target": "T",
                     "ft_size": 4, "strategy": "last_layer", "sampling": "random"}) == (
        "finetune S:8 -> T:4 last_layer random"
    )  # fmt: skip


def test_plain_console_prints_failures_at_once_and_progress_at_an_interval():
    stream = io.StringIO()
    console = ConsoleProgress(stream, interval_s=3600)
    assert not console.live and not is_live(stream)
    state = SearchState("s", "/x", planned=3, planned_pretrain=1, tune_log="/x/tune.log")
    console.start(state, [])
    for rows in ([_row("a0")], [_row("a1", "failed", error="boom")], [_row("a2")]):
        state.add(rows)
        console.rows(state, rows)
    console.trial_error(state, "trial t_1 (scratch T:40) errored after 3 attempt(s): OSError")
    console.close(state, finished=True)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Tune's trial tables: /x/tune.log (-v: also here)"
    assert lines[1].startswith("[0:00:00] seed-runs 1/3, running 0, failed 0")  # then 1 h
    assert lines[2].startswith("FAILED seed-run a1 (") and lines[2].endswith(": boom")
    assert lines[3].startswith("ERROR trial t_1")
    assert lines[4].startswith("search s done after 0:00:00: seed-runs 3/3") and len(lines) == 5


def test_tunes_trial_failure_tracebacks_go_to_the_log_file():
    log = io.StringIO()
    log.name = "tune.log"
    try:
        raise RuntimeError("worker lost\n  (remote traceback)\nOSError: disk full")
    except RuntimeError:
        failure = sys.exc_info()
    message = "Trial task failed for trial %s"
    record = logging.LogRecord("ray.tune", logging.ERROR, __file__, 1, message, ("t_1",), failure)
    assert ShortTrialFailures(log).filter(record)
    assert record.exc_info is None
    assert (
        record.getMessage() == "Trial task failed for trial t_1: OSError: disk full (in tune.log)"
    )
    assert "Traceback" in log.getvalue() and "worker lost" in log.getvalue()


def test_an_errored_trial_is_named_with_its_last_error_line(tmp_path):
    error = tmp_path / "error.txt"
    error.write_text("Failure # 1\nTraceback ...\n  File x\nRuntimeError: node died\n\n")
    trial = SimpleNamespace(
        config={"point": {"kind": "scratch", "target": "T", "ft_size": 4, "seed": 2}},
        error_file=str(error),
        num_failures=3,
    )
    text = trial_error_text(trial)
    assert "(scratch T:4 seed 2) errored after 3 attempt(s): RuntimeError: node died" in text
    assert str(error) in text


def test_the_first_progress_line_comes_soon_after_a_boot(monkeypatch):
    from tlsearch.search.watch import console as console_module

    monkeypatch.setattr(console_module.time, "monotonic", lambda: 5.0)  # 5 s of uptime
    stream = io.StringIO()
    console = ConsoleProgress(stream, interval_s=30)
    state = SearchState("s", "/x", planned=2, planned_pretrain=0, tune_log=None)
    console.start(state, [])
    state.add([_row("a0")])
    console.rows(state, [_row("a0")])
    assert stream.getvalue().startswith("[0:00:00] seed-runs 1/2")
