"""Parquet run log: schema round trip, idempotent retries, atomic writes, schema evolution."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tlsearch.results import schema as schema_mod
from tlsearch.results import store as store_mod
from tlsearch.results.schema import COLUMNS, RUN_SCHEMA, validate_row
from tlsearch.results.store import RunStore, read_runs, write_table_atomic

REPO = Path(__file__).resolve().parents[2]


def full_row(run_id: str = "abc123-s0", **over) -> dict:
    """A row with every column set to a plausible value."""
    row = {
        "run_id": run_id,
        "search_name": "demo",
        "trial_id": "t_00001",
        "config_hash": "abc123",
        "seed": 0,
        "kind": "finetune",
        "pt_source": "BG",
        "pt_size": 941,
        "pt_run_id": "pt-0011",
        "ft_target": "DC",
        "ft_size": 800,
        "strategy": "unfreeze_all",
        "sampling": "random",
        "lr": 1e-3,
        "batch_size": 16,
        "epochs_run": 120,
        "best_epoch": 70,
        "early_stopped": True,
        "status": "ok",
        "error": None,
        "n_train": 648,
        "n_val": 72,
        "n_test": 106,
        "train_seconds": 12.5,
        "structures_per_second": 900.0,
        "device": "cpu",
        "node": "host-1",
        "tlsearch_version": "0.1.0",
        "config_json": '{"lr": 0.001}',
        "checkpoint_uri": "/tmp/x/model.pt",
        "finished_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    }
    for i, name in enumerate(c for c in COLUMNS if c.startswith(("test_", "val_"))):
        row[name] = 0.1 * (i + 1)
    row.update(over)
    return row


def test_schema_round_trip(tmp_path):
    store = RunStore.for_search(tmp_path, "demo")
    row = full_row()
    store.write(row)
    assert store.exists(row["run_id"])
    back = store.read_row(row["run_id"])
    assert back == validate_row(row)
    table = read_runs(tmp_path / "demo" / "runs")
    assert table.schema.equals(RUN_SCHEMA, check_metadata=False)
    assert table.num_rows == 1
    # other readers see the same data
    pd_frame = pq.read_table(store.file_for(row["run_id"])).to_pandas()
    assert pd_frame.loc[0, "test_mae"] == pytest.approx(row["test_mae"])


def test_nan_becomes_null_and_bad_rows_rejected():
    row = validate_row({"run_id": "x-s0", "test_mae": float("nan"), "status": "diverged"})
    assert row["test_mae"] is None
    with pytest.raises(ValueError, match="unknown result column.*test_maee"):
        validate_row({"run_id": "x-s0", "test_maee": 1.0})
    with pytest.raises(ValueError, match="status must be one of ok, failed, diverged"):
        validate_row({"run_id": "x-s0", "status": "done"})
    with pytest.raises(ValueError, match="run_id"):
        RunStore("/tmp/nowhere").file_for("_hidden")


def test_retry_overwrites_its_own_file(tmp_path):
    store = RunStore.for_search(tmp_path, "demo")
    store.write(full_row(status="failed", error="RuntimeError: flaky", test_mae=None))
    store.write(full_row(test_mae=0.05))
    store.write(full_row(run_id="abc123-s1", seed=1))
    table = store.table()
    assert table.num_rows == 2
    assert sorted(table.column("run_id").to_pylist()) == ["abc123-s0", "abc123-s1"]
    assert store.read_row("abc123-s0")["test_mae"] == pytest.approx(0.05)
    assert store.read_row("abc123-s0")["status"] == "ok"


def test_writer_failing_midway_leaves_nothing(tmp_path, monkeypatch):
    store = RunStore.for_search(tmp_path, "demo")
    store.write(full_row(run_id="good-s0"))

    def broken_write(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        store.write(full_row(run_id="bad-s0"))
    assert sorted(os.listdir(store.path)) == ["good-s0.parquet"]
    assert store.table().column("run_id").to_pylist() == ["good-s0"]


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import pyarrow as pa
    from tlsearch.results.store import write_table_atomic
    n = 20_000_000
    table = pa.table({"x": np.random.rand(n), "y": np.random.rand(n)})
    print("writing", flush=True)
    write_table_atomic(table, sys.argv[1])
    print("done", flush=True)
    """
)


def test_process_killed_while_writing_leaves_no_visible_file(tmp_path):
    store = RunStore.for_search(tmp_path, "demo")
    store.write(full_row(run_id="good-s0"))
    target = store.file_for("big-s0")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, target],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 120
        temp = []
        while time.monotonic() < deadline and proc.poll() is None:
            temp = [n for n in os.listdir(store.path) if n.startswith("_tmp-")]
            if temp and os.path.getsize(os.path.join(store.path, temp[0])) > 0:
                break
            time.sleep(0.01)
        assert temp, "the writer finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not os.path.exists(target)
    assert any(n.startswith("_tmp-") for n in os.listdir(store.path))
    table = store.table()
    assert table.column("run_id").to_pylist() == ["good-s0"]
    assert store.remove_stale_temp(older_than_s=0) == 1


def test_old_files_without_a_new_column_read_with_nulls(tmp_path):
    runs = tmp_path / "demo" / "runs"
    old_schema = pa.schema([f for f in RUN_SCHEMA if f.name != "checkpoint_uri"])
    old = pa.Table.from_pylist([validate_row(full_row(run_id="old-s0"))], schema=old_schema)
    runs.mkdir(parents=True)
    pq.write_table(old, runs / "old-s0.parquet")
    RunStore(runs).write(full_row(run_id="new-s0"))
    table = read_runs(runs)
    by_id = dict(
        zip(table.column("run_id").to_pylist(), table.column("checkpoint_uri").to_pylist())
    )
    assert by_id == {"old-s0": None, "new-s0": "/tmp/x/model.pt"}
    assert RunStore(runs).read_row("old-s0")["checkpoint_uri"] is None
    # without the canonical schema the first file found can decide: why readers pass it
    assert ds.dataset(runs, schema=RUN_SCHEMA).count_rows() == 2


def test_missing_folder_reads_empty(tmp_path):
    assert read_runs(tmp_path / "nothing").num_rows == 0


def test_write_table_atomic_to_fresh_folder(tmp_path):
    path = tmp_path / "a" / "b" / "t.parquet"
    write_table_atomic(pa.table({"x": [1, 2]}), path)
    assert pq.read_table(path).num_rows == 2
    assert RUN_SCHEMA.metadata[b"tlsearch.schema_version"].decode() == schema_mod.SCHEMA_VERSION
