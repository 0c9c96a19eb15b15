"""Short versions, in the default suite, of the slow fault tests (tests/search/
test_slow_reliability.py): the driver and its Ray SIGKILLed mid-search then ``--resume``d, and a
worker node removed mid-search, each on 4 seed-runs of a fake job (issue 14). "Nothing lost":
planned = completed, no duplicate run id, and nothing recorded before the fault trained again.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

import yaml

from tests.search.conftest import _no_ray_here, executions, fake_spec_data
from tests.search.test_slow_reliability import (
    _cli,
    _lr_seed,
    _matches,
    _wait_for_rows,
    remove_a_node_after_rows,
    slow_fake_spec,
)
from tlsearch.results.store import RunStore
from tlsearch.search.plan.spec import SearchSpec
from tlsearch.search.run.driver import run_search

FOUR = {"lr": [1e-3, 2e-3], "seeds": [0, 1]}  # 2 configurations x 2 seeds


def test_driver_sigkilled_then_resumed_loses_and_repeats_nothing(tmp_path):
    _no_ray_here()
    data = slow_fake_spec(tmp_path, sleep=2.0, max_concurrent=1, **FOUR)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    store = RunStore.for_search(data["storage"], data["name"])
    proc = _cli(spec_path)
    try:
        _wait_for_rows(store, 1, proc)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = {r["run_id"]: r["config_json"] for r in store.rows()}
    assert 1 <= len(before) < 4, "the search was not interrupted mid-way"

    resumed = _cli(spec_path, "--resume")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:]
    assert "planned 4, completed 4, failed 0, diverged 0, remaining 0" in out
    rows = store.rows()
    assert len(rows) == 4 and len({r["run_id"] for r in rows}) == 4
    ran = Counter(executions(tmp_path))
    again = [line for line, n in ran.items() if n > 1
             and any(_matches(cfg, *_lr_seed(line)) for cfg in before.values())]  # fmt: skip
    assert not again, f"recorded before the kill and trained again: {again}"


def test_a_worker_node_removed_mid_search_loses_nothing(tmp_path, two_node_cluster):
    cluster, workers = two_node_cluster
    spec = SearchSpec.model_validate(slow_fake_spec(tmp_path, sleep=2.0, **FOUR))
    store = RunStore.for_search(spec.storage, spec.name)
    removed = remove_a_node_after_rows(cluster, workers[0], store, 1)
    status = run_search(spec, verbose=0)
    assert removed.is_set()
    assert (status.planned, status.completed, status.failed, status.diverged) == (4, 4, 0, 0)
    assert status.duplicates == 0 and status.remaining == 0


def test_a_deleted_row_a_truncated_row_and_a_damaged_pt_model_are_redone_by_resume(
    tmp_path, local_ray
):
    spec = SearchSpec.model_validate(fake_spec_data(tmp_path))
    status = run_search(spec, verbose=0)
    assert status.remaining == 0
    store = RunStore.for_search(spec.storage, spec.name)
    rows = store.rows()
    ids = sorted(r["run_id"] for r in rows if r["kind"] != "pretrain")
    deleted = min(r["run_id"] for r in rows if r["kind"] == "finetune")
    truncated = min(r["run_id"] for r in rows if r["kind"] == "scratch")
    os.remove(store.file_for(deleted))
    path = store.file_for(truncated)
    with open(path, "r+b") as fh:
        fh.truncate(30)
    (pt_model,) = (tmp_path / "store" / "pretrained").glob("*/model.pt")
    pt_model.write_bytes(b"fake")  # damaged: no longer its recorded SHA-256
    ran_before = Counter(executions(tmp_path))

    status = run_search(spec, resume=True, verbose=0)
    assert (status.planned, status.completed, status.remaining) == (len(ids), len(ids), 0)
    assert {deleted, truncated} <= {r["run_id"] for r in store.rows()}
    assert os.path.exists(os.path.join(os.path.dirname(path), "_bad", os.path.basename(path)))
    again = Counter(executions(tmp_path)) - ran_before
    # those two seed-runs and the PT job (its model retrained once), nothing else
    assert sum(again.values()) == 3, again
    assert pt_model.read_bytes() == b"fake model"
    # rows name their files relative to the storage root (a moved folder still finds them)
    uris = [r["checkpoint_uri"] for r in store.rows() if r["status"] == "ok"]
    assert uris and all(u.startswith(("fake/work/", "pretrained/")) for u in uris)


def test_sigterm_stops_a_search_as_ctrl_c_does(tmp_path):
    _no_ray_here()
    data = slow_fake_spec(tmp_path, sleep=2.0, max_concurrent=1, **FOUR)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    proc = _cli(spec_path)
    try:
        _wait_for_rows(RunStore.for_search(data["storage"], data["name"]), 1, proc)
        proc.send_signal(signal.SIGTERM)  # the driver only, as a scheduler or `kill` does
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:]
    assert "--resume" in out and "*** SIG" not in out and "stack trace" not in out.lower()
