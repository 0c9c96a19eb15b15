"""R2 / MAE / RMSE against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlsearch.training.metrics import json_safe, regression_metrics, target_metrics


def test_hand_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.5, 2.0, 2.0, 4.0])
    m = regression_metrics(y, p)
    # errors 0.5, 0, -1, 0 -> MAE 0.375, MSE 1.25/4, SS_tot = 5
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(0.375)
    assert m["rmse"] == pytest.approx(math.sqrt(1.25 / 4))
    assert m["r2"] == pytest.approx(1 - 1.25 / 5)


def test_nan_targets_skipped_and_degenerate_r2_is_nan():
    m = regression_metrics(np.array([1.0, np.nan, 3.0]), np.array([1.0, 100.0, 2.0]))
    assert m["n"] == 2 and m["mae"] == pytest.approx(0.5)
    assert math.isnan(regression_metrics(np.array([2.0]), np.array([1.0]))["r2"])
    assert regression_metrics(np.array([]), np.array([]))["n"] == 0


def test_multi_target_summary_and_json_safe():
    y = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, np.nan]])
    p = np.array([[1.0, 0.5], [2.0, 0.5], [3.0, 9.0]])
    m = target_metrics(y, p, ["a", "b"])
    assert m["per_target"]["a"]["mae"] == 0.0
    assert m["per_target"]["b"]["mae"] == pytest.approx(0.5)
    assert m["mae"] == pytest.approx(0.25)
    assert m["n"] == 5
    single = target_metrics(y[:, :1], p[:, :1], ["a"])
    assert set(single) == {"r2", "mae", "rmse", "n"}
    assert json_safe({"x": [math.nan, 1.0, np.float64(2.0)]}) == {"x": [None, 1.0, 2.0]}
