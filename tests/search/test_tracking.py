"""Experiment tracking of a search: MLflow's own client reads back the parent run and one child
per seed-run with its params and metrics (and history, model file); a resumed search logs
only what is new into the same parent; W&B through Ray's callback, offline."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
import yaml

from tests.search.conftest import fake_spec_data
from tlsearch.cli.main import main as search_cli
from tlsearch.results.store import RunStore
from tlsearch.search.watch.monitor import SearchState
from tlsearch.search.watch.tracking import MlflowTracker, history_metrics, mlflow_uri

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads file stores then


def _children(client, parent_id):
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=100
    )


def test_a_search_is_a_parent_run_with_one_child_per_seed_run(tmp_path, local_ray):
    spec = tmp_path / "fake.yaml"
    spec.write_text(yaml.safe_dump(fake_spec_data(tmp_path, datasets={"A": "ok", "B": "ok"})))
    assert search_cli(["search", str(spec), "--no-plot", "--mlflow"]) == 0  # <search>/mlflow.db
    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'fake' / 'mlflow.db'}")
    assert (tmp_path / "store" / "fake" / "mlartifacts").is_dir()  # not ./mlruns
    experiment = client.get_experiment_by_name("fake")
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`tlsearch.role` = 'search'"
    )
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["planned_seed_runs"] == "4"
    assert parent.data.metrics["seed_runs_completed"] == 4
    children = _children(client, parent.info.run_id)
    seed_runs = [c for c in children if c.data.tags["tlsearch.kind"] != "pretrain"]
    rows = {r["run_id"]: r for r in RunStore(tmp_path / "store" / "fake" / "runs").rows()}
    assert len(seed_runs) == 4 and len(children) == 5  # and the PT job
    for child in seed_runs:
        row = rows[child.data.tags["tlsearch.run_id"]]
        params = child.data.params
        assert params["kind"] == row["kind"] and params["seed"] == str(row["seed"])
        assert params["ft_target"] == "A" and params["ft_size"] == "10"
        assert params["sampling"] == "random" and float(params["lr"]) == row["lr"]
        if row["kind"] == "finetune":
            assert params["pt_source"] == "B" and params["strategy"] == row["strategy"]
        metrics = child.data.metrics
        assert metrics["val_mae"] == pytest.approx(row["val_mae"])
        assert metrics["test_r2"] == pytest.approx(row["test_r2"])
        assert metrics["test_rmse"] == pytest.approx(row["test_rmse"])
        assert metrics["epochs_run"] == 5 and "train_seconds" in metrics
        assert child.info.status == "FINISHED"
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["model.pt"]

    # resumed: no second parent, no second child for a recorded seed-run
    assert search_cli(["search", str(spec), "--no-plot", "--resume", "--mlflow"]) == 0
    assert len(client.search_runs([experiment.experiment_id])) == 6


def test_a_row_becomes_a_child_with_its_history_and_model(tmp_path):
    work = tmp_path / "work" / "r-s0"
    work.mkdir(parents=True)
    (work / "model.pt").write_bytes(b"weights")
    (work / "history.csv").write_text(
        "epoch,train_loss,val_mae,lr\n1,0.9,0.5,0.001\n2,0.7,0.4,0.0005\n"
    )
    row = {
        "run_id": "r-s0", "kind": "finetune", "status": "failed", "error": "ValueError: x",
        "seed": 0, "pt_source": "S", "pt_size": 100, "ft_target": "T", "ft_size": 40,
        "strategy": "last_layer", "sampling": "kmeans", "lr": 1e-3, "val_mae": 0.4,
        "epochs_run": 2, "wall_seconds": 3.0, "checkpoint_uri": str(work / "model.pt"),
        "finished_at": datetime(2026, 1, 2, tzinfo=timezone.utc),
    }  # fmt: skip
    tracker = MlflowTracker((tmp_path / "mlruns").as_uri(), experiment="e")
    state = SearchState("s", str(tmp_path), planned=1, planned_pretrain=0)
    tracker.start(state, [row])
    tracker.close(state, finished=False)
    client = tracker.client
    parent = client.get_run(tracker.parent_id)
    assert parent.info.status == "KILLED"
    (child,) = _children(client, tracker.parent_id)
    assert child.info.status == "FAILED" and child.data.tags["tlsearch.error"] == "ValueError: x"
    assert child.info.end_time - child.info.start_time == 3000
    history = client.get_metric_history(child.info.run_id, "epoch/val_mae")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.4)]
    assert child.data.metrics["val_mae"] == 0.4  # the row's, not the last epoch's
    names = sorted(a.path for a in client.list_artifacts(child.info.run_id))
    assert names == ["history.csv", "model.pt"]
    assert child.data.params["pt_size"] == "100" and child.data.params["sampling"] == "kmeans"


def test_default_store_is_sqlite_in_the_search_folder(tmp_path):
    assert mlflow_uri("default", str(tmp_path)) == f"sqlite:///{tmp_path}/mlflow.db"
    assert mlflow_uri("http://mlflow:5000", "s3://b/x") == "http://mlflow:5000"
    with pytest.raises(ValueError, match="tracking URI"):
        mlflow_uri("default", "s3://bucket/results")
    assert [m.key for m in history_metrics([{"epoch": "1", "lr": "", "val_mae": "x"}], 0)] == []


def test_wandb_logs_every_trial_offline(tmp_path, local_ray, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    spec = tmp_path / "fake.yaml"
    spec.write_text(yaml.safe_dump(fake_spec_data(tmp_path, seeds=[0])))
    assert search_cli(["search", str(spec), "--no-plot", "--wandb", "tlsearch-test"]) == 0
    runs = list((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 3  # 2 seed-runs and the PT job, one Tune trial each
