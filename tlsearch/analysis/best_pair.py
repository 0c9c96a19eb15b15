"""Best-pair discovery: rank every transfer configuration for one target, pick a winner.

Selection uses only the *selection metric* (default ``val_mae``, the validation split inside
the FT set); test metrics are reported, never used to choose. Every configuration is compared
with its scratch baseline (same target and FT size; same sampling and lr when available):
percentage change as in the paper (Sec. 3.2), a paired t-test over the seeds both ran (seed
``k`` of both used the same FT sample), and a negative-transfer flag when the transfer model's
mean test metric is worse than scratch.

A configuration is *eligible* to win only if it has no failed or diverged seed and, when the
plan says how many seeds were due, all of them; otherwise it is ranked but flagged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from tlsearch.analysis.aggregate import estimate, scratch_line, seed_values, summarize
from tlsearch.analysis.frame import TRANSFER_KINDS, Results
from tlsearch.analysis.stats import lower_is_better, paired_test, pct_change
from tlsearch.analysis.tables import fmt_pct, pt_label, size_label
from tlsearch.results.paths import locate
from tlsearch.storage.uri import resolve

logger = logging.getLogger(__name__)

ENSEMBLE_MANIFEST = "ensemble.json"


@dataclass
class BestPair:
    """The ranking of one target's configurations and its winner."""

    target: str
    ft_size: int | None
    select_metric: str
    report_metric: str
    ranking: pd.DataFrame
    scratch: pd.Series | None

    @property
    def winner(self) -> pd.Series | None:
        eligible = self.ranking[self.ranking["eligible"]]
        return None if eligible.empty else eligible.iloc[0]


def config_label(line: pd.Series | dict) -> str:
    """``BG(941)->DC800 unfreeze_all random lr=1e-03``; ``MPT->DC800 ...`` for MPT sources."""
    target = f"{line['ft_target']}{size_label(line['ft_size'])}"
    lr = f"lr={float(line['lr']):.0e}" if not pd.isna(line["lr"]) else ""
    if line["kind"] == "scratch":
        return f"scratch {target} {line['sampling']} {lr}".strip()
    return f"{pt_label(line)}->{target} {line['strategy']} {line['sampling']} {lr}".strip()


def default_ft_size(summary: pd.DataFrame, target: str) -> int | None:
    """The largest FT size with transfer results for ``target`` (None = whole training part)."""
    rows = summary[summary["kind"].isin(TRANSFER_KINDS) & (summary["ft_target"] == target)]
    if rows.empty:
        raise ValueError(f"no fine-tuning results for target {target!r}")
    sizes = rows["ft_size"].dropna()
    if rows["ft_size"].isna().any() or sizes.empty:
        return None
    return int(sizes.max())


def _eligible(line: pd.Series, planned: int | None) -> tuple[bool, str]:
    if line.get("n_skipped"):
        return False, "skipped by search.prefilter"
    if line["n_ok"] == 0:
        return False, "no ok seed"
    if line["n_failed"] or line["n_diverged"]:
        return False, f"{line['n_failed']} failed, {line['n_diverged']} diverged seed(s)"
    if planned is not None and line["n_ok"] < planned:
        return False, f"{line['n_ok']} of {planned} seeds"
    return True, ""


def _versus_scratch(
    runs: pd.DataFrame, line: pd.Series, scratch: pd.Series | None, metric: str
) -> dict[str, Any]:
    ours = estimate(line, metric).mean
    if scratch is None:
        return {"scratch_mean": None, "pct_change": None, "n_pairs": 0, "p_value": None}
    base = estimate(scratch, metric).mean
    test = paired_test(seed_values(runs, line, metric), seed_values(runs, scratch, metric), metric)
    return {
        "scratch_mean": base,
        "pct_change": pct_change(ours, base, metric),
        "n_pairs": test.n_pairs,
        "p_value": test.p_value,
    }


def rank(
    results: Results,
    target: str,
    *,
    ft_size: int | None | str = "auto",
    select_metric: str = "val_mae",
    report_metric: str = "test_mae",
) -> BestPair:
    """Rank the transfer configurations of ``target`` at one FT size by ``select_metric``.

    Args:
        results: loaded run rows.
        target: the FT target (dataset name in the search spec).
        ft_size: FT size to compare at; ``"auto"`` = the largest with transfer results.
        select_metric: chooses the winner (a ``val_*`` metric; ``test_*`` is refused).
        report_metric: compared with scratch and tested for significance.

    Raises:
        ValueError: a test metric as ``select_metric``, or no results for the target.
    """
    if select_metric.startswith("test"):
        raise ValueError(
            f"select_metric {select_metric!r}: selection must not use the test set; "
            "use a val_* metric (test metrics are reported, never selected on)"
        )
    allowed = ("val_mae", "val_rmse", "val_r2")
    if select_metric not in allowed:
        raise ValueError(f"select_metric {select_metric!r}: use one of {', '.join(allowed)}")
    if report_metric not in ("test_mae", "test_rmse", "test_r2"):
        raise ValueError(f"report_metric {report_metric!r}: use test_mae, test_rmse or test_r2")
    planned = results.planned_seeds()
    runs = results.seed_runs
    summary = summarize(runs, planned)
    if ft_size == "auto":
        ft_size = default_ft_size(summary, target)
    size_match = summary["ft_size"].isna() if ft_size is None else summary["ft_size"] == ft_size
    lines = summary[
        summary["kind"].isin(TRANSFER_KINDS) & (summary["ft_target"] == target) & size_match
    ]
    if lines.empty:
        raise ValueError(f"no fine-tuning results for {target} at FT size {ft_size}")
    records = []
    for _, line in lines.iterrows():
        scratch = scratch_line(summary, target, ft_size, line["sampling"], line["lr"])
        ok, why = _eligible(line, planned)
        versus = _versus_scratch(runs, line, scratch, report_metric)
        r2 = _versus_scratch(runs, line, scratch, "test_r2")
        mean = estimate(line, report_metric).mean
        records.append(
            {
                **line.to_dict(),
                "config": config_label(line),
                "eligible": ok,
                "why_not": why,
                "select_mean": estimate(line, select_metric).mean,
                **{f"vs_scratch_{k}": v for k, v in versus.items()},
                "vs_scratch_r2_pct_change": r2["pct_change"],
                "significant": versus["p_value"] is not None and versus["p_value"] < 0.05,
                "negative_transfer": _worse(mean, versus["scratch_mean"], report_metric),
            }
        )
    ranking = pd.DataFrame(records)
    ascending = lower_is_better(select_metric)
    ranking = ranking.sort_values(
        ["eligible", "select_mean"], ascending=[False, ascending], na_position="last"
    ).reset_index(drop=True)
    ranking.insert(0, "rank", range(1, len(ranking) + 1))
    scratch = scratch_line(summary, target, ft_size)
    return BestPair(target, ft_size, select_metric, report_metric, ranking, scratch)


def _worse(value: float | None, scratch: float | None, metric: str) -> bool:
    if value is None or scratch is None:
        return False
    return value > scratch if lower_is_better(metric) else value < scratch


def justification(best: BestPair, top: int = 5) -> pd.DataFrame:
    """A short table: the top configurations and the scratch baseline, values as mean ± CI."""
    shown = best.ranking.head(top)
    rows = []
    for _, line in shown.iterrows():
        rows.append(
            {
                "rank": line["rank"],
                "configuration": line["config"],
                "seeds": f"{line['n_ok']}" + (f"/{line['n_planned']}" if line["n_planned"] else ""),
                f"{best.select_metric} (selection)": estimate(line, best.select_metric).text(),
                "test R2": estimate(line, "test_r2").text(),
                "test MAE": estimate(line, "test_mae").text(),
                "vs scratch MAE %": fmt_pct(line["vs_scratch_pct_change"]),
                "vs scratch R2 %": fmt_pct(line["vs_scratch_r2_pct_change"]),
                "paired p": _fmt_p(line["vs_scratch_p_value"], line["vs_scratch_n_pairs"]),
                "note": _note(line),
            }
        )
    if best.scratch is not None:
        line = best.scratch
        rows.append(
            {
                "rank": "",
                "configuration": config_label(line),
                "seeds": str(line["n_ok"]),
                f"{best.select_metric} (selection)": estimate(line, best.select_metric).text(),
                "test R2": estimate(line, "test_r2").text(),
                "test MAE": estimate(line, "test_mae").text(),
                "vs scratch MAE %": "",
                "vs scratch R2 %": "",
                "paired p": "",
                "note": "baseline",
            }
        )
    return pd.DataFrame(rows)


def _note(line: pd.Series) -> str:
    notes = []
    if not line["eligible"]:
        notes.append(f"not eligible: {line['why_not']}")
    if line["negative_transfer"]:
        notes.append("NEGATIVE TRANSFER")
    if line["significant"]:
        notes.append("significant")
    if pd.isna(line["vs_scratch_scratch_mean"]):
        notes.append("no scratch baseline")
    return "; ".join(notes)


def _fmt_p(value: object, n: object) -> str:
    if value is None or pd.isna(value):
        return f"– (n={n})"
    return f"{float(value):.3g} (n={n})"


def winner_summary(best: BestPair) -> dict[str, Any]:
    """The answer as a JSON-able dict."""
    win = best.winner
    if win is None:
        return {"target": best.target, "ft_size": best.ft_size, "winner": None}
    keys = ("pt_source", "pt_size", "strategy", "sampling", "lr", "kind")
    return {
        "target": best.target,
        "ft_size": best.ft_size,
        "selected_on": best.select_metric,
        "reported": best.report_metric,
        "winner": {k: _plain(win[k]) for k in keys} | {"label": win["config"]},
        "seeds": win["seeds"],
        "test_r2": estimate(win, "test_r2").__dict__,
        "test_mae": estimate(win, "test_mae").__dict__,
        "scratch_test_mae": _plain(win["vs_scratch_scratch_mean"]),
        "improvement_pct": _plain(win["vs_scratch_pct_change"]),
        "p_value": _plain(win["vs_scratch_p_value"]),
        "significant": bool(win["significant"]),
        "negative_transfer": bool(win["negative_transfer"]),
        "configurations_ranked": len(best.ranking),
    }


def _plain(value: object) -> object:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        return value.item()  # type: ignore[union-attr]
    return value


def export_checkpoints(best: BestPair, results: Results, out_dir: Path) -> Path:
    """Copy the winner's checkpoints (one per seed) into ``out_dir`` with an ensemble manifest.

    ``tlsearch predict --model out_dir`` then predicts with all of them and reports the mean and
    the spread. Returns the manifest path.

    Raises:
        ValueError: there is no eligible winner, or no seed has a checkpoint.
    """
    win = best.winner
    if win is None:
        raise ValueError(f"no eligible configuration for {best.target}: nothing to export")
    rows = results.runs[results.runs["run_id"].isin(win["run_ids"])]
    rows = rows[(rows["status"] == "ok") & rows["checkpoint_uri"].notna()]
    if rows.empty:
        raise ValueError(f"the winner {win['config']} has no recorded checkpoints")
    out_dir.mkdir(parents=True, exist_ok=True)
    members = []
    for _, row in rows.sort_values("seed").iterrows():
        local = out_dir / f"seed{int(row['seed'])}" / "model.pt"
        source = locate(str(row["checkpoint_uri"]), str(row["search_dir"]))  # a moved folder
        _copy(str(source), local)
        members.append(
            {
                "seed": int(row["seed"]),
                "model": str(local.relative_to(out_dir)),
                "run_id": row["run_id"],
                "source": source,
            }
        )
    manifest = {"configuration": win["config"], "target": best.target, "members": members}
    path = out_dir / ENSEMBLE_MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    logger.info("exported %d checkpoint(s) of %s to %s", len(members), win["config"], out_dir)
    return path


def _copy(uri: str, local: Path) -> None:
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"checkpoint {uri} is missing")
    local.parent.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(local), source_filesystem=fs)
