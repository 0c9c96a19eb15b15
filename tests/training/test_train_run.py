"""train_run: target resolution, output files, and nothing lost when the test part fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlsearch.structures.records import LoadResult, StructureRecord
from tlsearch.training import run
from tlsearch.training.config import RunConfig
from tlsearch.training.scaler import TargetScaler

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}


def _record(rid: str, **targets: float) -> StructureRecord:
    return StructureRecord(rid, np.eye(3) * 3.0, np.zeros((1, 3)), ("Po",), targets)


def test_resolve_target_names():
    records = [_record("a", target=1.0), _record("b", target=2.0)]
    assert run.resolve_target_names(records, None) == ["target"]
    assert run.resolve_target_names(records, "gap") == ["target"]  # the loader renamed it
    multi = [_record("a", x=1.0), _record("b", y=2.0)]
    assert run.resolve_target_names(multi, None) == ["x", "y"]
    assert run.resolve_target_names(multi, "y") == ["y"]
    with pytest.raises(ValueError, match="'z' not in the data"):
        run.resolve_target_names(multi, "z")
    with pytest.raises(ValueError, match="no target values"):
        run.resolve_target_names([_record("a")], None)


def test_target_matrix_and_multi_target_csv(tmp_path):
    records = [_record("a", x=1.0), _record("b", y=2.0)]
    m = run.target_matrix(["b", "a"], records, ["x", "y"])
    np.testing.assert_array_equal(np.isnan(m), [[True, False], [False, True]])
    path = tmp_path / "p.csv"
    run.write_predictions_csv(path, ["b", "a"], ["x", "y"], np.zeros((2, 2)), m)
    lines = path.read_text().splitlines()
    assert lines[0] == "id,target:x,prediction:x,target:y,prediction:y"
    assert lines[1] == "b,,0.0,2.0,0.0"


def _cfg(tmp_path, model=TINY, **train) -> RunConfig:
    return RunConfig(
        data="generated:30:1",
        test="generated:6:2",
        out_dir=tmp_path / "run",
        cache_dir=None,
        train={"epochs": 2, "device": "cpu", **train},
        model=model,
    )


def test_val_outputs_survive_a_failing_test_evaluation(tmp_path, monkeypatch):
    real = run.evaluate_and_write
    calls = []

    def fail_on_test(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("test evaluation broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "evaluate_and_write", fail_on_test)
    cfg = _cfg(tmp_path)
    with pytest.raises(RuntimeError, match="test evaluation broke"):
        run.train_run(cfg, progress=False)
    out = cfg.out_dir
    for name in ("model.pt", "predictions_val.csv", "history.csv", "config.yaml"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val"]["n"] == 3 and metrics["test"] is None
    assert "test evaluation broke" in metrics["test_error"]


def test_no_test_set_still_writes_val_metrics(tmp_path):
    cfg = _cfg(tmp_path, target_normalisation="standardise").model_copy(update={"test": None})
    metrics = run.train_run(cfg, progress=False)
    assert metrics["test"] is None and metrics["val"]["n"] == 3
    assert "normalised" in metrics["val"]
    assert not (cfg.out_dir / "predictions_test.csv").exists()
    on_disk = json.loads((cfg.out_dir / "metrics.json").read_text())
    assert on_disk["val"]["mae"] == pytest.approx(metrics["val"]["mae"])


def test_explicit_output_count_must_match_targets(tmp_path):
    cfg = _cfg(tmp_path, model={**TINY, "output_features": 2})
    with pytest.raises(ValueError, match="output_features is 2"):
        run.train_run(cfg, progress=False)


def test_same_seed_reproduces_the_run_on_cpu(tmp_path):
    def history(name):
        cfg = _cfg(tmp_path).model_copy(update={"test": None, "out_dir": tmp_path / name})
        metrics = run.train_run(cfg, progress=False)
        rows = (cfg.out_dir / "history.csv").read_text().splitlines()
        return metrics["val"], [",".join(r.split(",")[:-1]) for r in rows]  # drop seconds

    assert history("a") == history("b")


def test_scaler_is_fitted_on_the_whole_training_data_before_the_pool_is_drawn(tmp_path):
    """Two different training samples of one dataset: one scaler, the whole data's."""
    metrics = {}
    for name, pick in (("head", slice(0, 12)), ("tail", slice(15, 30))):
        cfg = _cfg(tmp_path, epochs=1, target_normalisation="paper").model_copy(
            update={"test": None, "out_dir": tmp_path / name}
        )
        metrics[name] = run.train_run(
            cfg, progress=False, select_pool=lambda data, p=pick: np.arange(len(data.store))[p]
        )
    head, tail = metrics["head"], metrics["tail"]
    assert head["n_train"] + head["n_val"] == 12 and tail["n_train"] + tail["n_val"] == 15
    assert head["scaler"] == tail["scaler"] and head["scaler_id"] == tail["scaler_id"]
    data = run.prepare_data("generated:30:1", names=None, graph_settings=_cfg(tmp_path).graphs,
                            cache_dir=None, progress=False)  # fmt: skip
    assert head["scaler"] == run.pool_scaler(data, "paper").to_dict()
    np.testing.assert_allclose(
        TargetScaler.from_dict(head["scaler"]).transform(data.targets).min(), -1.0
    )


def test_pool_scaler_counts_every_loaded_record_and_ignores_unknown_targets():
    records = [_record("a", x=1.0), _record("b", x=3.0, y=10.0), _record("c", y=20.0)]
    data = run.PreparedData("mem", LoadResult(records, [], source="mem"), None, ["x", "y"], None)
    scaler = run.pool_scaler(data, "standardise")
    np.testing.assert_allclose(scaler.shift, [2.0, 15.0])
    np.testing.assert_allclose(scaler.scale, [1.0, 5.0])


def test_a_run_keeping_the_best_weights_also_scores_the_last_ones(tmp_path):
    """The paper's test predictions came from the final epoch's weights: a run that keeps the
    best epoch's reports those too, exactly as a run that keeps the last ones would."""
    from tlsearch.search.run.rows import outcome_columns

    recipe = {"epochs": 8, "learning_rate": 0.05, "scheduler": "none",
              "target_normalisation": "standardise"}  # fmt: skip
    # a seed whose best epoch is not its last, so that the two choices differ (which epoch
    # is best in so short a run moves with float rounding, e.g. the thread count)
    for seed in range(3, 11):
        recipe["seed"] = seed
        best = run.train_run(_cfg(tmp_path / "best", weights="best", **recipe), progress=False)
        if best["best_epoch"] != best["epochs_run"]:
            break
    else:
        pytest.fail("every seed's best epoch was its last")
    last = run.train_run(_cfg(tmp_path / "last", weights="last", **recipe), progress=False)
    assert best["test_last_epoch"]["mae"] == pytest.approx(last["test"]["mae"], rel=1e-6)
    assert best["test"]["mae"] != pytest.approx(last["test"]["mae"], rel=1e-6)
    assert last["test_last_epoch"] is None  # its headline is the last epoch's already
    out = tmp_path / "best" / "run"
    same = (tmp_path / "last" / "run" / "predictions_test.csv").read_text()
    assert (out / "predictions_test_last_epoch.csv").read_text() == same
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test_last_epoch"]["mae"] == best["test_last_epoch"]["mae"]
    # the row: normalised units as the headline, the last run's headline for both runs
    rows = outcome_columns(best), outcome_columns(last)
    for row in rows:
        assert row["test_mae_last_epoch"] == pytest.approx(rows[1]["test_mae"], rel=1e-6)
    assert rows[0]["test_mae"] != pytest.approx(rows[0]["test_mae_last_epoch"], rel=1e-6)
