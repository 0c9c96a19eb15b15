"""Regression metrics (R2, MAE, RMSE, n) in plain numpy, with unknown targets (NaN) skipped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | int]:
    """R2, MAE, RMSE and n of one property; pairs whose target is NaN are skipped.

    R2 is ``1 - SS_res / SS_tot`` (as sklearn's ``r2_score``); it is NaN when fewer than two
    targets are known or all known targets are equal. MAE/RMSE are NaN when ``n == 0``.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape[0]} targets but {y_pred.shape[0]} predictions")
    known = np.isfinite(y_true)
    t, p = y_true[known], y_pred[known]
    n = int(t.size)
    if n == 0:
        return {"r2": math.nan, "mae": math.nan, "rmse": math.nan, "n": 0}
    err = p - t
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if n >= 2 and ss_tot > 0 else math.nan
    return {
        "r2": r2,
        "mae": float(np.mean(np.abs(err))),
        "rmse": math.sqrt(ss_res / n),
        "n": n,
    }


def target_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Metrics of (N, P) targets/predictions.

    One property: the flat ``{r2, mae, rmse, n}``. Several: the same keys averaged over the
    properties (``n`` summed) plus ``per_target: {name: {r2, mae, rmse, n}}``.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    if y_true.shape[1] != len(names) or y_pred.shape != y_true.shape:
        raise ValueError(
            f"targets {y_true.shape}, predictions {y_pred.shape} and {len(names)} names disagree"
        )
    per = {name: regression_metrics(y_true[:, j], y_pred[:, j]) for j, name in enumerate(names)}
    if len(names) == 1:
        return per[names[0]]
    summary: dict[str, Any] = {
        key: float(np.nanmean([m[key] for m in per.values()]))
        if any(math.isfinite(m[key]) for m in per.values())
        else math.nan
        for key in ("r2", "mae", "rmse")
    }
    summary["n"] = int(sum(m["n"] for m in per.values()))
    summary["per_target"] = per
    return summary


def json_safe(value: Any) -> Any:
    """Replace NaN/inf floats by ``None`` (strict JSON), recursively through dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value
