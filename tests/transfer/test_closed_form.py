"""The closed-form head (ridge / RBF kernel ridge with k-fold CV) on frozen features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlsearch.graphs.settings import GraphSettings
from tlsearch.structures.load import load_data
from tlsearch.transfer.closed_form import fit_closed_form


def test_ridge_recovers_a_linear_target_and_skips_unknown_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) * [1, 10, 100, 1, 1]  # standardisation makes scales irrelevant
    y = (x @ [1.0, 0.1, 0.01, 0.0, -2.0])[:, None]
    y[3] = np.nan
    head = fit_closed_form(x, y, kind="ridge", folds=5, seed=0)
    test = rng.normal(size=(10, 5)) * [1, 10, 100, 1, 1]
    expected = test @ [1.0, 0.1, 0.01, 0.0, -2.0]
    np.testing.assert_allclose(head.predict(test)[:, 0], expected, atol=0.05)
    assert head.cv_mae < 0.05 and set(head.params) == {"alpha"}


def test_krr_is_reproducible_and_beats_the_mean_on_a_smooth_target():
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, size=(80, 3))
    y = np.sin(x[:, 0]) + x[:, 1] ** 2
    heads = [fit_closed_form(x[:60], y[:60], kind="krr", seed=3) for _ in range(2)]
    assert heads[0].params == heads[1].params
    pred = heads[0].predict(x[60:])[:, 0]
    np.testing.assert_array_equal(pred, heads[1].predict(x[60:])[:, 0])
    assert np.abs(pred - y[60:]).mean() < 0.5 * np.abs(y[60:] - y[:60].mean()).mean()


def test_bad_input_fails_clearly():
    with pytest.raises(ValueError, match="krr or ridge"):
        fit_closed_form(np.zeros((4, 2)), np.zeros(4), kind="svm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2"):
        fit_closed_form(np.zeros((2, 2)), np.array([1.0, np.nan]))


def test_frozen_chgnet_features_with_krr():
    """The issue's quick check, tiny: frozen CHGNet 0.3.0 pooled features + KRR with CV."""
    pytest.importorskip("chgnet")
    from tlsearch.model.foundation import load_foundation

    model, _ = load_foundation("chgnet-0.3.0")
    records = load_data("generated:24:1").records
    store = type(model).input_store(records, GraphSettings())
    with torch.no_grad():
        feats = model.features(store.collate(range(len(records)))).numpy()
    targets = np.array([next(iter(r.targets.values())) for r in records])
    head = fit_closed_form(feats[:20], targets[:20], kind="krr", folds=5, seed=0)
    pred = head.predict(feats[20:])
    assert pred.shape == (4, 1) and np.isfinite(pred).all()


def _cfg(tmp_path, name: str):
    from tlsearch.training.config import RunConfig

    return RunConfig(data="generated:24:3", test="generated:6:4", out_dir=tmp_path / name,
                     cache_dir=tmp_path / "cache",
                     train={"device": "cpu", "num_threads": 1, "seed": 0})  # fmt: skip


@pytest.mark.parametrize("kind", ["krr", "ridge"])
def test_the_krr_and_ridge_strategies_write_a_model_that_predicts(tmp_path, kind):
    pytest.importorskip("chgnet")
    from tlsearch.prediction import Predictor
    from tlsearch.transfer.run import finetune_run

    metrics = finetune_run(_cfg(tmp_path, kind), None, kind, size=20, foundation="chgnet-0.3.0",
                           progress=False)  # fmt: skip
    assert metrics["provenance"]["strategy"] == kind and metrics["n_train"] == 20
    assert metrics["closed_form"]["kind"] == kind and np.isfinite(metrics["test"]["mae"])
    frame = Predictor.load(tmp_path / kind / "model.pt", device="cpu").predict("generated:6:4")
    test = np.loadtxt(tmp_path / kind / "predictions_test.csv", delimiter=",", skiprows=1,
                      usecols=2)  # fmt: skip
    np.testing.assert_allclose(frame["mean"].to_numpy(), test, rtol=1e-6, atol=1e-6)
    again = finetune_run(_cfg(tmp_path, kind + "2"), None, kind, size=20,
                         foundation="chgnet-0.3.0", progress=False)  # fmt: skip
    assert again["closed_form"]["features_computed"] == 0  # the frozen-trunk cache
    assert again["test"] == metrics["test"]


def test_the_torch_head_is_the_estimator():
    from tlsearch.transfer.closed_form import to_module

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 2))
    new = rng.normal(size=(7, 4))
    for kind in ("krr", "ridge"):
        fit = fit_closed_form(x, y, kind=kind)
        head = to_module(fit)
        got = head(torch.as_tensor(new, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(got, fit.predict(new), rtol=1e-10, atol=1e-10)


def test_a_closed_form_strategy_needs_a_start(tmp_path):
    from tlsearch.transfer.run import finetune_run

    with pytest.raises(ValueError, match="needs --pretrained or --foundation"):
        finetune_run(_cfg(tmp_path, "x"), None, "krr")


def test_ridge_on_an_alignn_pt_model(tmp_path):
    from tlsearch.prediction import Predictor
    from tlsearch.training.config import RunConfig
    from tlsearch.transfer.run import finetune_run, pretrain_run

    pt = RunConfig(data="generated:16:7", out_dir=tmp_path / "pt", cache_dir=tmp_path / "cache",
                   model={"hidden_features": 16, "embedding_features": 8, "alignn_layers": 1,
                          "gcn_layers": 1},
                   train={"epochs": 1, "device": "cpu", "num_threads": 1})  # fmt: skip
    pretrain_run(pt, progress=False)
    metrics = finetune_run(_cfg(tmp_path, "ridge"), tmp_path / "pt", "ridge", progress=False)
    assert metrics["provenance"]["pt_format"] == "tlsearch" and np.isfinite(metrics["test"]["mae"])
    frame = Predictor.load(tmp_path / "ridge" / "model.pt", device="cpu").predict("generated:6:4")
    test = np.loadtxt(tmp_path / "ridge" / "predictions_test.csv", delimiter=",", skiprows=1,
                      usecols=2)  # fmt: skip
    np.testing.assert_allclose(frame["mean"].to_numpy(), test, rtol=1e-5, atol=1e-6)


def test_krr_on_every_layers_features(tmp_path):
    pytest.importorskip("sevenn")
    from tlsearch.prediction import Predictor
    from tlsearch.transfer.run import finetune_run

    metrics = finetune_run(_cfg(tmp_path, "layers"), None, "krr", size=20, progress=False,
                           foundation="sevenn-7net-0", features="layers")  # fmt: skip
    assert metrics["closed_form"]["features"] == "layers"
    assert metrics["closed_form"]["width"] == 5 * 128  # five interaction blocks' scalars
    frame = Predictor.load(tmp_path / "layers" / "model.pt", device="cpu").predict("generated:6:4")
    test = np.loadtxt(tmp_path / "layers" / "predictions_test.csv", delimiter=",", skiprows=1,
                      usecols=2)  # fmt: skip
    np.testing.assert_allclose(frame["mean"].to_numpy(), test, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="layers with krr"):
        finetune_run(_cfg(tmp_path, "x"), None, "last_layer", foundation="sevenn-7net-0",
                     features="layers")  # fmt: skip
