"""Result rows of seed-runs and PT jobs, built from a job's metrics dict.

Units of the metric columns (the headline ``test_mae`` among them):

- without a suffix: the units the model trains in. With a target scaler (``normalise: paper`` or
  ``standardise``) these are the dataset's normalised units: one scaler per dataset, fitted on
  its whole non-test pool before any FT sample, PT subset or validation split is drawn
  (:func:`tlsearch.training.run.pool_scaler`), so every seed, FT size, sampling method and job
  kind on one target reads the same physical error as the same number. With ``normalise: none``
  they are the data's own units (for the paper's shared files: the paper's normalised units).
- ``*_phys``: physical units, set only when the run fitted a scaler (``train_run`` then
  reports physical metrics with a ``normalised`` sub-dict); ``scaler_id`` in the job's
  ``metrics.json`` names the scaler used.

Job functions may report nested (``{"test": {"mae": ...}}``) or dotted (``{"test.mae": ...}``)
metrics.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import tlsearch
from tlsearch.results.schema import METRIC_NAMES


def error_text(exc: BaseException, limit: int = 2000) -> str:
    """``Type: message`` on one line, truncated to ``limit`` characters."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lookup(metrics: Mapping[str, Any], *path: str) -> Any:
    dotted = ".".join(path)
    if dotted in metrics:
        return metrics[dotted]
    value: Any = metrics
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def metric_columns(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``test_*``/``val_*`` (normalised) and ``*_phys`` columns of a metrics dict."""
    out: dict[str, Any] = {}
    for part in ("test", "val"):
        scaled = _lookup(metrics, part, "normalised") is not None
        for name in METRIC_NAMES:
            plain = _finite(_lookup(metrics, part, name))
            if scaled:
                out[f"{part}_{name}"] = _finite(_lookup(metrics, part, "normalised", name))
                out[f"{part}_{name}_phys"] = plain
            else:
                out[f"{part}_{name}"] = plain
    out.update(last_epoch_columns(metrics, out))
    return out


def last_epoch_columns(metrics: Mapping[str, Any], headline: Mapping[str, Any]) -> dict:
    """``test_*_last_epoch``: the test metrics of the final epoch's weights, in the headline's
    units. From ``test_last_epoch`` when the run kept the best epoch's weights and scored the
    last ones too; the headline ``test_*`` when that key is present but None (the kept weights
    are the last epoch's); None when the job did not report it (older runs, other jobs)."""
    names = [f"test_{name}_last_epoch" for name in METRIC_NAMES]
    if "test_last_epoch" not in metrics or _lookup(metrics, "test") is None:
        return dict.fromkeys(names)
    last = metrics["test_last_epoch"]
    if last is None:
        return {col: headline.get(f"test_{name}") for col, name in zip(names, METRIC_NAMES)}
    scaled = _lookup(last, "normalised") is not None
    path = ("normalised",) if scaled else ()
    return {col: _finite(_lookup(last, *path, name)) for col, name in zip(names, METRIC_NAMES)}


def outcome_columns(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Status and run statistics of a finished job (``diverged`` on a NaN loss or metric)."""
    columns = metric_columns(metrics)
    diverged = bool(metrics.get("diverged")) or columns["val_mae"] is None
    early = metrics.get("early_stopped")
    return {
        **columns,
        "status": "diverged" if diverged else "ok",
        "error": "training diverged (non-finite loss or metric)" if diverged else None,
        "epochs_run": metrics.get("epochs_run"),
        "best_epoch": metrics.get("best_epoch"),
        "early_stopped": None if early is None else bool(early),
        "batch_size": metrics.get("batch_size"),
        "n_train": metrics.get("n_train"),
        "n_val": metrics.get("n_val"),
        "n_test": metrics.get("n_test"),
        "train_seconds": _finite(metrics.get("train_seconds")),
        "structures_per_second": _finite(metrics.get("train_structures_per_second")),
        "device": metrics.get("device"),
        **graph_cache_columns(metrics),
    }


def graph_cache_columns(metrics: Mapping[str, Any]) -> dict[str, int | None]:
    """``graph_cache_hits`` / ``graph_cache_misses``: graph stores the job read / built.

    From ``train_run``'s ``graph_cache_hit`` (``{"train": bool, "test": bool}``, or one bool),
    or explicit ``graph_cache_hits`` / ``graph_cache_misses`` counts; None when not reported.
    """
    hits, misses = metrics.get("graph_cache_hits"), metrics.get("graph_cache_misses")
    if hits is not None or misses is not None:
        return {"graph_cache_hits": hits, "graph_cache_misses": misses}
    flags = metrics.get("graph_cache_hit")
    if flags is None:
        return {"graph_cache_hits": None, "graph_cache_misses": None}
    values = list(flags.values()) if isinstance(flags, Mapping) else [flags]
    values = [bool(v) for v in values if v is not None]
    return {"graph_cache_hits": sum(values), "graph_cache_misses": len(values) - sum(values)}


def base_row(run_id: str, search_name: str, trial_id: str | None, **columns: Any) -> dict:
    """The identity columns every row has (status ``failed`` until an outcome is set)."""
    return {
        "run_id": run_id,
        "search_name": search_name,
        "trial_id": trial_id,
        "status": "failed",
        "node": socket.gethostname(),
        "tlsearch_version": tlsearch.__version__,
        **columns,
    }


def finish(row: dict[str, Any]) -> dict[str, Any]:
    """Stamp ``finished_at``."""
    row["finished_at"] = datetime.now(timezone.utc)
    return row


def trial_report(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any]:
    """What a trial reports after each seed: the mean metric over the seeds done so far.

    A configuration with any failed, diverged or skipped seed reports a penalty (1e6, or -1e6 when
    maximising) instead: never NaN (Optuna drops NaN results) and never the best.
    """
    values = [_finite(r.get(metric)) for r in rows]
    n_ok = sum(r["status"] == "ok" for r in rows)
    good = n_ok == len(rows) and all(v is not None for v in values)
    penalty = 1e6 if mode == "min" else -1e6
    return {
        metric: sum(values) / len(values) if good else penalty,  # type: ignore[arg-type]
        "seeds_done": len(rows),
        "n_ok": n_ok,
        "n_failed": sum(r["status"] == "failed" for r in rows),
        "n_diverged": sum(r["status"] == "diverged" for r in rows),
        "n_skipped": sum(r["status"] == "skipped" for r in rows),
        "config_hash": rows[0].get("config_hash") if rows else None,
    }
