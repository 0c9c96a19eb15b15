"""One line per configuration: seeds planned/ok/failed/diverged/skipped and mean ± 95% CI per
metric.

Only ``ok`` seed-runs enter the means; failed and diverged ones are counted in their own columns
(never silently dropped), and a configuration with fewer ok seeds than planned is ``incomplete``
(not one ``search.prefilter`` skipped: its seeds are counted in ``n_skipped``).
A configuration is its :data:`~tlsearch.results.schema.CONFIG_KEYS` *and* its ``config_hash``
(which also hashes the recipe: epochs, model, data), so two searches that ran the same point
with different recipes are never averaged together; the same point and recipe in two searches
(e.g. a search and the runs ``best-pair --search`` added) is one configuration.
"""

from __future__ import annotations

import pandas as pd

from tlsearch.analysis.stats import Estimate, mean_ci
from tlsearch.results.schema import CONFIG_KEYS

#: Metrics summarised by default (normalised units; ``*_phys`` are added when present).
DEFAULT_METRICS = ("test_r2", "test_mae", "test_rmse", "val_r2", "val_mae", "val_rmse")


def metric_columns(runs: pd.DataFrame, physical: bool = False) -> list[str]:
    """The metrics to summarise: normalised ones, plus physical ones when any row has them."""
    names = list(DEFAULT_METRICS)
    if physical:
        names += [f"{m}_phys" for m in DEFAULT_METRICS if runs[f"{m}_phys"].notna().any()]
    return names


def _group_line(group: pd.DataFrame, metrics: list[str], planned: int | None) -> dict:
    ok = group[group["status"] == "ok"]
    line: dict = {
        "n_ok": len(ok),
        "n_failed": int((group["status"] == "failed").sum()),
        "n_diverged": int((group["status"] == "diverged").sum()),
        "n_skipped": int((group["status"] == "skipped").sum()),
        "n_planned": planned,
        "seeds": sorted(int(s) for s in ok["seed"].dropna()),
        "run_ids": list(group["run_id"]),
    }
    line["incomplete"] = planned is not None and line["n_ok"] < planned and not line["n_skipped"]
    for metric in metrics:
        est = mean_ci(ok[metric])
        line[f"{metric}_mean"] = est.mean
        line[f"{metric}_ci"] = est.half_width
        line[f"{metric}_std"] = est.std
    errors = group.loc[group["status"] != "ok", "error"].dropna()
    line["first_error"] = errors.iloc[0] if len(errors) else None
    return line


def summarize(
    runs: pd.DataFrame, planned_seeds: int | None = None, metrics: list[str] | None = None
) -> pd.DataFrame:
    """Per-configuration summary of seed-run rows (PT jobs are ignored).

    Args:
        runs: rows from :func:`tlsearch.analysis.frame.load_runs` (``Results.runs``).
        planned_seeds: seeds each configuration should have (marks ``incomplete`` lines).
        metrics: metric columns to summarise (default :data:`DEFAULT_METRICS`).

    Returns:
        A DataFrame with :data:`CONFIG_KEYS`, the counts, and ``<metric>_mean|_ci|_std``.
    """
    metrics = list(metrics or DEFAULT_METRICS)
    seed_runs = runs[runs["kind"] != "pretrain"]
    keys = [*CONFIG_KEYS, "config_hash"]
    lines = []
    for key, group in seed_runs.groupby(keys, dropna=False, sort=True):
        line = dict(zip(keys, key, strict=True))
        line.update(_group_line(group, metrics, planned_seeds))
        lines.append(line)
    counts = ["n_ok", "n_failed", "n_diverged", "n_skipped", "n_planned", "incomplete"]
    columns = [*CONFIG_KEYS, *counts]
    frame = pd.DataFrame(lines)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    for column in CONFIG_KEYS:
        frame[column] = frame[column].where(frame[column].notna(), None)
    return frame


def estimate(line: pd.Series | dict, metric: str) -> Estimate:
    """The :class:`Estimate` stored in a summary line."""
    mean = line.get(f"{metric}_mean")
    half = line.get(f"{metric}_ci")
    mean = None if mean is None or pd.isna(mean) else float(mean)
    half = None if half is None or pd.isna(half) else float(half)
    std = line.get(f"{metric}_std")
    std = None if std is None or pd.isna(std) else float(std)
    return Estimate(mean, half, int(line.get("n_ok") or 0), std)


def scratch_line(
    summary: pd.DataFrame,
    target: str,
    ft_size: object,
    sampling: str | None = None,
    lr: float | None = None,
) -> pd.Series | None:
    """The scratch baseline of ``target`` at ``ft_size``.

    Preference: same sampling and learning rate, then same sampling, then any; ties go to the
    line with most ok seeds.
    """
    rows = summary[
        (summary["kind"] == "scratch")
        & (summary["ft_target"] == target)
        & _same(summary["ft_size"], ft_size)
    ]
    if rows.empty:
        return None
    score = (rows["sampling"] == sampling).astype(int) * 2
    if lr is not None:
        score = score + (rows["lr"].astype(float).sub(float(lr)).abs() < 1e-12).astype(int)
    ranked = rows.assign(_score=score).sort_values(["_score", "n_ok"], ascending=False)
    return ranked.drop(columns="_score").iloc[0]


def seed_values(runs: pd.DataFrame, line: pd.Series | dict, metric: str) -> dict[int, float]:
    """``{seed: metric}`` of the ok seed-runs of one summary line."""
    rows = runs[runs["run_id"].isin(line["run_ids"]) & (runs["status"] == "ok")]
    return {
        int(seed): float(value)
        for seed, value in zip(rows["seed"], rows[metric], strict=True)
        if value is not None and not pd.isna(value)
    }


def _same(column: pd.Series, value: object) -> pd.Series:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return column.isna()
    return column == value
