"""The paper's tables as DataFrames, from a per-configuration summary.

Where several configurations fall into one cell (e.g. a search over learning rates and sampling
methods), the cell shows the one with the best *selection* metric (``val_mae`` by default);
test metrics are shown, never used to choose. Values are mean ± 95% t-CI over seeds with the
number of ok seeds; cells with fewer seeds than planned are marked ``*``, and failed/diverged
seeds are counted in ``n_failed``/``n_diverged``.
"""

from __future__ import annotations

import pandas as pd

from tlsearch.analysis.aggregate import estimate, scratch_line
from tlsearch.analysis.frame import TRANSFER_KINDS
from tlsearch.analysis.stats import lower_is_better, pct_change

SELECT_METRIC = "val_mae"


def best_per(summary: pd.DataFrame, keys: list[str], select: str = SELECT_METRIC) -> pd.DataFrame:
    """One line per distinct ``keys``: the configuration with the best ``select`` mean."""
    if summary.empty:
        return summary
    ascending = lower_is_better(select)
    ordered = summary.sort_values(
        [f"{select}_mean", "n_ok"], ascending=[ascending, False], na_position="last"
    )
    return ordered.drop_duplicates(subset=keys, keep="first").reset_index(drop=True)


def cell_text(line: pd.Series, metric: str, digits: int = 3) -> str:
    """``0.653 ± 0.021 (n=5)``, with ``*`` when incomplete and failures counted."""
    text = estimate(line, metric).text(digits)
    if line.get("incomplete"):
        text += "*"
    bad = int(line.get("n_failed") or 0) + int(line.get("n_diverged") or 0)
    if bad:
        text += f" [{bad} failed/diverged]"
    return text


def pt_label(line: pd.Series) -> str:
    """``BG(941)``, ``MPT``, ``scratch``."""
    if line["kind"] == "scratch":
        return "scratch"
    label = "MPT" if line["kind"] == "mpt" and not line["pt_source"] else str(line["pt_source"])
    return label if pd.isna(line["pt_size"]) else f"{label}({int(line['pt_size'])})"


def size_label(value: object) -> str:
    return "all" if value is None or pd.isna(value) else str(int(value))


def grid(
    lines: pd.DataFrame, row: str, column: str, metric: str, text: bool = False
) -> pd.DataFrame:
    """A row x column table of one metric (means, or formatted cells with ``text``)."""
    if lines.empty:
        return pd.DataFrame()
    values = {}
    for _, line in lines.iterrows():
        cell = cell_text(line, metric) if text else estimate(line, metric).mean
        values.setdefault(line[row], {})[line[column]] = cell
    frame = pd.DataFrame(values).T
    frame = frame[sorted(frame.columns, key=_size_key)]
    return frame.sort_index()


def _size_key(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("inf")


def scratch_lines(summary: pd.DataFrame) -> pd.DataFrame:
    """Best scratch configuration per (target, FT size) (Fig. 4a / 6a)."""
    lines = best_per(summary[summary["kind"] == "scratch"], ["ft_target", "ft_size"])
    if not lines.empty:
        lines = lines.assign(row=lines["ft_target"], column=lines["ft_size"].map(size_label))
    return lines


def pair_lines(summary: pd.DataFrame) -> pd.DataFrame:
    """Best transfer configuration per (PT, PT size, FT, FT size, strategy) (Fig. 4b)."""
    transfer = summary[summary["kind"].isin(TRANSFER_KINDS)]
    keys = ["kind", "pt_source", "pt_size", "ft_target", "ft_size", "strategy"]
    lines = best_per(transfer, keys)
    if not lines.empty:
        lines = lines.assign(
            pt=[pt_label(r) for _, r in lines.iterrows()],
            row=[f"{pt_label(r)}-{r['ft_target']}" for _, r in lines.iterrows()],
            column=lines["ft_size"].map(size_label),
        )
    return lines


def with_pct_change(lines: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """``lines`` plus the scratch means and percentage changes of test R2 and MAE."""
    metrics = ("test_r2", "test_mae")
    columns: dict[str, list] = {f"{p}_{m}": [] for m in metrics for p in ("scratch", "pct")}
    for _, line in lines.iterrows():
        scratch = scratch_line(
            summary, line["ft_target"], line["ft_size"], line["sampling"], line["lr"]
        )
        for metric in metrics:
            ref = None if scratch is None else estimate(scratch, metric).mean
            columns[f"scratch_{metric}"].append(ref)
            columns[f"pct_{metric}"].append(pct_change(estimate(line, metric).mean, ref, metric))
    return lines.assign(**columns)


def fmt_pct(value: object) -> str:
    """A percentage change as ``+12.3``; ``–`` when unknown."""
    return "–" if value is None or pd.isna(value) else f"{float(value):+.1f}"


def matrix_lines(summary: pd.DataFrame, strategy: str = "unfreeze_all") -> pd.DataFrame:
    """The PT x FT matrix (Fig. 6b): for each FT target its largest FT size, and for each PT
    source its most common PT size; one strategy."""
    lines = pair_lines(summary)
    if lines.empty:
        return lines
    lines = lines[(lines["kind"] == "finetune") & (lines["strategy"] == strategy)]
    keep = []
    for _target, group in lines.groupby("ft_target"):
        size = group["ft_size"].dropna().max() if group["ft_size"].notna().any() else None
        group = group[group["ft_size"] == size] if size is not None else group
        keep.append(group)
    if not keep:
        return lines.iloc[0:0]
    lines = pd.concat(keep)
    common = lines.groupby("pt_source")["pt_size"].agg(
        lambda s: s.mode().iloc[0] if s.notna().any() else None
    )
    mask = [
        (pd.isna(common[src]) and pd.isna(size)) or size == common[src]
        for src, size in zip(lines["pt_source"], lines["pt_size"], strict=True)
    ]
    lines = lines[mask]
    return lines.assign(row=lines["pt_source"], column=lines["ft_target"])


def best_in_column(lines: pd.DataFrame, select: str = SELECT_METRIC) -> set[tuple[str, str]]:
    """``(row, column)`` of the best line per column by the selection metric."""
    best = best_per(lines, ["column"], select)
    return {(r["row"], r["column"]) for _, r in best.iterrows()}


def mpt_vs_pairwise(summary: pd.DataFrame) -> pd.DataFrame:
    """Per FT target and size: MPT, the best pair-wise model (by selection metric) and scratch,
    with percentage changes vs scratch (Fig. 6c)."""
    lines = with_pct_change(pair_lines(summary), summary)
    rows = []
    if lines.empty:
        return pd.DataFrame()
    for (target, size), group in lines.groupby(["ft_target", "ft_size"], dropna=False):
        mpt = best_per(group[group["kind"] == "mpt"], ["ft_target"])
        pair = best_per(group[group["kind"] == "finetune"], ["ft_target"])
        if mpt.empty:
            continue
        scratch = scratch_line(summary, target, size)
        row = {"ft_target": target, "ft_size": size_label(size)}
        for name, frame in (("mpt", mpt), ("pairwise", pair)):
            if frame.empty:
                continue
            line = frame.iloc[0]
            row[f"{name}_model"] = line["pt"]
            for metric in ("test_r2", "test_mae"):
                row[f"{name}_{metric}"] = cell_text(line, metric)
                row[f"{name}_pct_{metric}"] = line[f"pct_{metric}"]
        if scratch is not None:
            row["scratch_test_r2"] = cell_text(scratch, "test_r2")
            row["scratch_test_mae"] = cell_text(scratch, "test_mae")
        rows.append(row)
    return pd.DataFrame(rows)


def ood_targets(summary: pd.DataFrame) -> list[str]:
    """FT targets that are not also a PT source (e.g. JARVIS 2D band gaps, paper Sec. 3.6)."""
    sources = set(summary["pt_source"].dropna())
    targets = summary.loc[summary["kind"].isin(TRANSFER_KINDS), "ft_target"].dropna()
    return sorted(t for t in set(targets) if t not in sources)


def target_table(summary: pd.DataFrame, target: str) -> pd.DataFrame:
    """Table 1 style for one target at its largest FT size: scratch, MPT and every PT source at
    its best PT size (by the selection metric), test R2 and MAE."""
    lines = summary[summary["ft_target"] == target]
    if lines.empty:
        return pd.DataFrame()
    if lines["ft_size"].notna().any():
        lines = lines[lines["ft_size"] == lines["ft_size"].max()]
    scratch = best_per(lines[lines["kind"] == "scratch"], ["ft_target"])
    transfer = best_per(lines[lines["kind"].isin(TRANSFER_KINDS)], ["kind", "pt_source"])
    if not transfer.empty:  # as the paper's Table 1: scratch, MPT, then the PT sources
        order = [
            (k != "mpt", str(s))
            for k, s in zip(transfer["kind"], transfer["pt_source"], strict=True)
        ]
        transfer = transfer.iloc[sorted(range(len(order)), key=order.__getitem__)]
    rows = []
    for _, line in pd.concat([scratch, transfer]).iterrows():
        rows.append(
            {
                "model": pt_label(line),
                "strategy": line["strategy"],
                "test R2": cell_text(line, "test_r2"),
                "test MAE": cell_text(line, "test_mae"),
                "val MAE (selection)": cell_text(line, "val_mae"),
            }
        )
    return pd.DataFrame(rows)
