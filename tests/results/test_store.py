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

import pandas as pd
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
        where.write(b"PAR1 half a file")
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
    # other readers miss the half-written file too: pandas, and globs like DuckDB's
    assert pd.read_parquet(store.path)["run_id"].tolist() == ["good-s0"]
    assert sorted(p.name for p in Path(store.path).glob("*.parquet")) == ["good-s0.parquet"]
    assert store.remove_stale_temp(older_than_s=3600) == 0  # maybe a live writer's: kept
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


def test_the_temporary_file_is_synced_before_the_rename(tmp_path, monkeypatch):
    """fsync(temp file) -> rename -> fsync(folder): a crash never leaves an empty final file."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "fsync", fsync)
    monkeypatch.setattr(store_mod.os, "replace", replace)
    store = RunStore.for_search(tmp_path, "demo")
    final = store.write(full_row())
    temp = events[1][1]
    assert events == [("fsync", temp), ("replace", temp), ("fsync", str(Path(final).parent))]
    name = Path(temp).name
    assert name.startswith("_tmp-") and not name.endswith(".parquet")


def _write_version(folder: Path, run_id: str, version: str, drop: tuple[str, ...], **extra):
    """A one-row file as an older (or newer, with ``extra`` columns) tlsearch wrote it."""
    fields = [f for f in RUN_SCHEMA if f.name not in drop]
    fields += [pa.field(k, pa.string()) for k in extra]
    schema = pa.schema(fields, metadata={"tlsearch.schema_version": version})
    row = {**validate_row(full_row(run_id=run_id, wall_seconds=2.5)), **extra}
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([row], schema=schema), folder / f"{run_id}.parquet")


V2_COLUMNS = ("wall_seconds", "graph_cache_hits", "graph_cache_misses", "pt_cache_hit")
V3_COLUMNS = ("rehearsal", "data_note")
V4_COLUMNS = ("test_r2_last_epoch", "test_mae_last_epoch", "test_rmse_last_epoch")


def test_a_folder_of_several_schema_versions_reads_with_the_union_schema(tmp_path):
    runs = tmp_path / "runs"
    _write_version(runs, "a-v1-s0", "1", V2_COLUMNS + V3_COLUMNS + V4_COLUMNS)
    _write_version(runs, "b-v2-s0", "2", V3_COLUMNS + V4_COLUMNS)
    RunStore(runs).write(full_row(run_id="c-v3-s0", rehearsal=True))
    _write_version(runs, "d-v9-s0", "9", (), future_column="from a newer tlsearch")
    table = read_runs(runs)
    assert table.column_names == [*COLUMNS, "future_column"]
    rows = {r["run_id"]: r for r in table.to_pylist()}
    assert [rows[k]["wall_seconds"] for k in sorted(rows)] == [None, 2.5, None, 2.5]
    assert [rows[k]["rehearsal"] for k in sorted(rows)] == [None, None, True, None]
    assert rows["d-v9-s0"]["future_column"] == "from a newer tlsearch"
    assert rows["a-v1-s0"]["future_column"] is None
    assert read_runs(runs, columns=["run_id", "data_note"]).num_rows == 4


def test_old_files_are_upgraded_so_single_schema_readers_see_every_column(tmp_path):
    runs = tmp_path / "runs"
    _write_version(runs, "a-v1-s0", "1", V2_COLUMNS + V3_COLUMNS + V4_COLUMNS)
    _write_version(runs, "b-v2-s0", "2", V3_COLUMNS + V4_COLUMNS)
    store = RunStore(runs)
    store.write(full_row(run_id="c-v4-s0"))
    _write_version(runs, "c-v3-s0", "3", V4_COLUMNS)
    _write_version(runs, "d-v9-s0", "9", (), future_column="x")
    # pandas takes the schema of one file: the columns added later vanish
    assert "wall_seconds" not in pd.read_parquet(runs).columns
    before = read_runs(runs).to_pylist()
    current = os.stat(runs / "c-v4-s0.parquet").st_mtime_ns
    assert store.upgrade_old_files() == 3  # v1, v2 and v3; the current file is left alone
    assert store.upgrade_old_files() == 0
    assert os.stat(runs / "c-v4-s0.parquet").st_mtime_ns == current
    frame = pd.read_parquet(runs).set_index("run_id")
    assert set(COLUMNS) - {"run_id"} <= set(frame.columns)
    assert frame.loc["b-v2-s0", "wall_seconds"] == 2.5
    assert read_runs(runs).to_pylist() == before
    version = schema_mod.SCHEMA_VERSION.encode()
    assert pq.read_schema(runs / "a-v1-s0.parquet").metadata[b"tlsearch.schema_version"] == version


def test_unreadable_rows_are_moved_aside_and_named(tmp_path, caplog):
    store = RunStore.for_search(tmp_path, "demo")
    for i in range(3):
        store.write(full_row(f"abc123-s{i}", seed=i))
    truncated = Path(store.file_for("abc123-s1"))
    truncated.write_bytes(truncated.read_bytes()[:40])
    empty = Path(store.file_for("abc123-s2"))
    empty.write_bytes(b"")
    with caplog.at_level("WARNING"):
        table = read_runs(tmp_path / "demo" / "runs")
    assert table.column("run_id").to_pylist() == ["abc123-s0"]
    bad = tmp_path / "demo" / "runs" / "_bad"
    assert sorted(p.name for p in bad.iterdir()) == ["abc123-s1.parquet", "abc123-s2.parquet"]
    assert str(truncated) in caplog.text and str(bad / truncated.name) in caplog.text
    assert read_runs(tmp_path / "demo" / "runs").num_rows == 1  # read again: nothing moves
    # a trial's look-up of its own row: moved aside, read as not recorded
    store.write(full_row("abc123-s3", seed=3))
    Path(store.file_for("abc123-s3")).write_bytes(b"PAR1 not a parquet file")
    assert store.read_row("abc123-s3") is None
    assert (bad / "abc123-s3.parquet").exists() and not store.exists("abc123-s3")
    # the driver's start (schema upgrade) too; the same name twice keeps both
    store.write(full_row("abc123-s1", seed=1))
    Path(store.file_for("abc123-s1")).write_bytes(b"x")
    assert store.upgrade_old_files() == 0
    assert len(list(bad.glob("abc123-s1.parquet*"))) == 2
    assert store.rows()[0]["run_id"] == "abc123-s0"
