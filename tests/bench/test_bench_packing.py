"""``tlsearch bench packing``: phase set-up per cluster, the phases' specs (the same runs and
the same PT job), throughput from rows, and the whole benchmark on fake jobs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from tests.search.conftest import FAKE_JOB
from tlsearch.bench.packing import (
    default_setup,
    format_report,
    phase_resources,
    phase_spec,
    phase_throughput,
    pt_checkpoint,
    run_packing,
)
from tlsearch.search.plan.compile import compile_spec


def test_gpu_setup_packs_four_runs_per_gpu_with_the_paper_model():
    setup = default_setup({"CPU": 16.0, "GPU": 1.0})
    assert (setup.gpu, setup.per_device, setup.runs, setup.ft_size) == (True, 4, 8, 800)
    assert setup.model == {}  # ALIGNNConfig's defaults: the paper's model
    assert phase_resources(setup, "packed") == ({"cpu": 4.0, "gpu": 0.25}, 4)
    assert phase_resources(setup, "alone") == ({"cpu": 4.0, "gpu": 1.0}, 1)
    assert phase_resources(setup, "warm") == phase_resources(setup, "alone")


def test_cpu_setup_splits_the_node_between_packed_runs():
    setup = default_setup({"CPU": 2.0})
    assert (setup.gpu, setup.per_device, setup.runs) == (False, 2, 4)
    assert setup.model["hidden_features"] == 32
    assert phase_resources(setup, "alone") == ({"cpu": 2.0, "gpu": 0.0}, 1)
    assert phase_resources(setup, "packed") == ({"cpu": 1.0, "gpu": 0.0}, 2)
    assert default_setup({"CPU": 8.0}, per_device=4).cpus_per_run == 2.0


def test_phases_run_the_same_seed_runs_from_the_warm_phases_pt_model(tmp_path):
    setup = default_setup({"CPU": 16.0, "GPU": 1.0})
    warm = phase_spec(setup, "warm", tmp_path)
    assert warm.seeds == [8]
    assert len(compile_spec(warm, str(tmp_path)).pretrain_jobs) == 1
    model = str(tmp_path / "pretrained" / "k" / "model.pt")
    alone, packed = (phase_spec(setup, p, tmp_path, model) for p in ("alone", "packed"))
    assert alone.seeds == packed.seeds == list(range(8))
    assert packed.resources.gpu == 0.25 and packed.max_concurrent == 4
    for spec in (alone, packed):
        assert spec.pt_sources[0].checkpoint == model
        plan = compile_spec(spec, str(tmp_path))
        assert plan.planned_seed_runs == 8 and not plan.pretrain_jobs


def test_pt_checkpoint_of_the_warm_phase():
    row = {"run_id": "pt-1", "kind": "pretrain", "status": "ok", "checkpoint_uri": "/m.pt"}
    assert pt_checkpoint([row, _row("a", 0.0, 1.0)]) == "/m.pt"
    with pytest.raises(ValueError, match="pt-1: failed boom"):
        pt_checkpoint([row | {"status": "failed", "error": "boom"}])


def _row(run_id, start, seconds, n_train=80, epochs=10, status="ok", kind="finetune"):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return {
        "run_id": run_id, "kind": kind, "status": status, "error": None,
        "finished_at": t0 + timedelta(seconds=start + seconds), "wall_seconds": seconds,
        "n_train": n_train, "epochs_run": epochs, "structures_per_second": 100.0,
        "train_seconds": seconds - 1, "device": "cuda",
    }  # fmt: skip


def test_throughput_is_structures_trained_over_the_rows_window():
    rows = [_row("a", 0.0, 10.0), _row("b", 2.0, 10.0), _row("pt", -50.0, 40.0, kind="pretrain")]
    stats = phase_throughput(rows)
    assert stats["runs"] == 2 and stats["window_seconds"] == pytest.approx(12.0)
    assert stats["peak_concurrent_runs"] == 2
    assert phase_throughput([_row("a", 0.0, 5.0), _row("b", 5.0, 5.0)])["peak_concurrent_runs"] == 1
    assert stats["structures_trained"] == 1600
    assert stats["structures_per_second"] == pytest.approx(1600 / 12.0)
    with pytest.raises(ValueError, match="b .failed: out of memory"):
        bad = _row("b", 2.0, 10.0, status="failed") | {"error": "out of memory"}
        phase_throughput([rows[0], bad])


def test_packing_bench_on_fake_jobs(tmp_path, local_ray):
    """Two fake runs at a time finish the same 4 sleeping runs faster than one at a time."""
    log = tmp_path / "log"
    setup = replace(
        default_setup(local_ray.cluster_resources()),
        data=f"fake://ok?log={log}&sleep=2", pt_data=f"fake://ok?log={log}&source=pt",
        job_fn=FAKE_JOB,
    )  # fmt: skip
    report = run_packing(setup, tmp_path / "store")
    alone, packed = report["phases"]["alone"], report["phases"]["packed"]
    assert alone["runs"] == packed["runs"] == 4
    assert alone["structures_trained"] == packed["structures_trained"] == 4 * 9 * 5
    assert alone["window_seconds"] > 8.0
    assert (alone["peak_concurrent_runs"], packed["peak_concurrent_runs"]) == (1, 2)
    assert 1.2 < report["ratio"] < 2.5
    assert report["goal"] is None  # the 3x goal is a GPU's
    assert (log / "executions.log").read_text().count('"pretrain"') == 1
    assert "packed / alone" in format_report(report)
