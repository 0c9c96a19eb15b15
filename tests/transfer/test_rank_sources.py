"""``tlsearch rank-sources``: the closed-form estimates against brute force, their order on
informative vs uninformative features, and the command on two PT models, whose trunk features
a later frozen-trunk fine-tune reuses from the cache."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from tlsearch.cli.main import main as tlsearch_cli
from tlsearch.training.config import RunConfig
from tlsearch.transfer.rank_sources import (
    logme,
    loo_residuals,
    mean_loo_mae,
    ridge_loo,
    spearman,
)
from tlsearch.transfer.run import finetune_run, pretrain_run

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}


def _features(n=60, d=12, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=d) + noise * rng.normal(size=n)
    return x, y


def test_loo_residuals_equal_refitting_without_each_structure():
    x, y = _features(n=25, d=8, noise=0.5)
    xc, penalty = x - x.mean(axis=0), 3.0
    brute = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        a, b = xc[keep], y[keep]
        design = np.hstack([np.ones((len(b), 1)), a])
        reg = penalty * np.eye(design.shape[1])
        reg[0, 0] = 0.0  # the intercept is not penalised
        w = np.linalg.solve(design.T @ design + reg, design.T @ b)
        brute.append(y[i] - np.concatenate([[1.0], xc[i]]) @ w)
    np.testing.assert_allclose(loo_residuals(x, y, penalty), brute, rtol=1e-8, atol=1e-10)


def test_informative_features_score_better_on_both_estimates():
    x, y = _features(noise=0.1)
    noise = np.random.default_rng(5).normal(size=x.shape)
    good_mae, _ = ridge_loo(x, y)
    bad_mae, _ = ridge_loo(noise, y)
    assert good_mae < 0.5 * bad_mae
    assert logme(x, y) > logme(noise, y)
    half = np.hstack([x[:, :6], noise[:, :6]])  # half the signal
    assert logme(x, y) > logme(half, y) > logme(noise, y)
    assert math.isfinite(logme(x[:5], y[:5]))  # fewer structures than features


def test_the_baseline_is_the_leave_one_out_mean():
    y = np.array([1.0, 2.0, 4.0, 7.0])
    loo = [abs(y[i] - np.delete(y, i).mean()) for i in range(4)]
    assert mean_loo_mae(y) == pytest.approx(np.mean(loo))


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
    assert math.isnan(spearman([1], [2]))


def test_rank_sources_command_and_the_shared_feature_cache(tmp_path, capsys):
    cache = tmp_path / "cache"
    models = []
    for name, data in (("a", "generated:40:21"), ("b", "generated:40:22")):
        run = RunConfig(data=data, out_dir=tmp_path / name, cache_dir=cache, model=TINY,
                        train={"epochs": 2, "device": "cpu", "num_threads": 1})  # fmt: skip
        pretrain_run(run, progress=False)
        models.append(str(tmp_path / name))
    out = tmp_path / "ranking.csv"
    args = ["rank-sources", "--data", "generated:30:23", "--pretrained", *models, "--size", "20",
            "--cache-dir", str(cache), "--out", str(out)]  # fmt: skip
    assert tlsearch_cli(args) == 0
    printed = capsys.readouterr().out
    assert "best first by probe_mae" in printed and "1. " in printed and "2. " in printed
    rows = list(csv.DictReader(out.open()))
    assert {r["pretrained"] for r in rows} == set(models) and [r["rank"] for r in rows] == [
        "1",
        "2",
    ]
    assert all(r["n"] == "20" and r["features_cached"] == "False" for r in rows)
    assert float(rows[0]["probe_mae"]) <= float(rows[1]["probe_mae"])
    assert rows[0]["baseline_mae"] == rows[1]["baseline_mae"] and "predicting the mean" in printed

    # a last_layer fine-tune of the same sample finds every training feature in the cache
    ft = RunConfig(data="generated:30:23", out_dir=tmp_path / "ft", cache_dir=cache,
                   train={"epochs": 1, "device": "cpu", "num_threads": 1})  # fmt: skip
    metrics = finetune_run(ft, models[0], strategy="last_layer", size=20, progress=False)
    assert metrics["frozen_trunk"]["used"] and metrics["frozen_trunk"]["cache_hit"]
    assert tlsearch_cli(args) == 0  # and a second ranking reads them back
    assert "features cached" in capsys.readouterr().out


def test_a_missing_model_is_a_clear_error(tmp_path, capsys):
    args = ["rank-sources", "--data", "generated:30:24", "--pretrained", str(tmp_path / "nope"),
            "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    assert tlsearch_cli(args) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "does not exist" in err
