"""Our results next to the paper's own per-run numbers (``anchors/paper_metrics.csv``).

The anchors CSV has one row per paper run: ``experiment, pt, pt_size, ft, ft_size, strategy,
trial, n_test, r2, mae`` (extra columns ignored). Both sides are reduced to mean ± 95% t-CI over
their seeds/trials and joined on (PT, PT size, FT, FT size, strategy) after mapping our strategy
names to the paper's; the paper's ``experiment`` is kept as a column (one of our
configurations can match several experiments, e.g. BG(941)->DC800 strategy 1 is both in the
7x6 matrix and in the FT-strategy study). MAE is in the normalised units of the paper's files,
which are also our unsuffixed metric columns: on the paper's files (``normalise: none``) exactly;
on raw data with ``normalise: paper`` in our own once-per-dataset normalisation (fitted on the
dataset's non-test pool, the paper's constants being unpublished), the same for every FT size
and sampling of one target, so rows compare like with like among themselves.

``weights="last"`` compares the test metrics of each run's final-epoch weights
(``test_*_last_epoch``), which is what the paper's test predictions came from (alignn's
in-memory ``best_model = net`` is a reference to the trained model), instead of the headline
ones of the weights the run kept (the best validation epoch's by default).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tlsearch.analysis.aggregate import summarize
from tlsearch.analysis.frame import Results
from tlsearch.analysis.stats import mean_ci

DEFAULT_ANCHORS = Path("..") / "shared" / "data" / "paper" / "anchors" / "paper_metrics.csv"
JOIN_KEYS = ("pt", "pt_size", "ft", "ft_size", "strategy")
ANCHOR_COLUMNS = ("experiment", "pt", "pt_size", "ft", "ft_size", "strategy", "r2", "mae")

#: Our strategy names -> the paper's (anchors use several spellings per study).
PAPER_STRATEGY = {
    "unfreeze_all": "unfreeze_all",
    "ALL-UF": "unfreeze_all",
    "new_head": "new_head",
    "NPH": "new_head",
    "last_layer": "last_layer",
    "LAST-LAY": "last_layer",
    "interaction_2b": "interaction_2b",
    "2B": "interaction_2b",
    "interaction_3b": "interaction_3b",
    "3B": "interaction_3b",
    "new_head_unfreeze_all": "new_head_unfreeze_all",
    "unfreeze_all_new_head": "new_head_unfreeze_all",
    "scratch": "scratch",
}


def load_anchors(path: str | Path) -> pd.DataFrame:
    """Read an anchors CSV and check its columns.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a required column is missing (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"anchors file {path} not found")
    frame = pd.read_csv(path)
    missing = [c for c in ANCHOR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; need {', '.join(ANCHOR_COLUMNS)}")
    return frame


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["strategy"] = frame["strategy"].map(lambda s: PAPER_STRATEGY.get(s, s))
    for column in ("pt_size", "ft_size"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    for column in ("pt", "ft", "strategy"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), "")
    return frame


def paper_summary(anchors: pd.DataFrame) -> pd.DataFrame:
    """Mean ± CI of the paper's runs per (experiment, join keys)."""
    anchors = _canonical(anchors[anchors["ft"].notna()])
    lines = []
    keys = ["experiment", *JOIN_KEYS]
    for key, group in anchors.groupby(keys, dropna=False, sort=True):
        line = dict(zip(keys, key, strict=True))
        for metric in ("r2", "mae"):
            est = mean_ci(group[metric])
            line[f"paper_{metric}"] = est.mean
            line[f"paper_{metric}_ci"] = est.half_width
        line["paper_n"] = len(group)
        lines.append(line)
    return _canonical(pd.DataFrame(lines))


#: Which weights' test metrics to compare: the run's headline (kept) ones or the last epoch's.
WEIGHT_COLUMNS = {
    "best": {"r2": "test_r2", "mae": "test_mae"},
    "last": {"r2": "test_r2_last_epoch", "mae": "test_mae_last_epoch"},
}


def our_summary(
    results: Results, rename: dict[str, str] | None = None, weights: str = "best"
) -> pd.DataFrame:
    """Our configurations keyed like the paper (MPT sources are ``MPT`` with no PT size).

    Raises:
        ValueError: an unknown ``weights``, or ``"last"`` on rows that never recorded the last
            epoch's test metrics (written before they existed, or without a test set).
    """
    if weights not in WEIGHT_COLUMNS:
        raise ValueError(f"weights must be one of {sorted(WEIGHT_COLUMNS)}, got {weights!r}")
    columns = WEIGHT_COLUMNS[weights]
    rename = rename or {}
    runs = results.seed_runs
    ok = runs[runs["status"] == "ok"]
    if weights == "last" and len(ok) and ok[columns["mae"]].isna().all():
        raise ValueError(
            "no seed-run has the last epoch's test metrics (test_mae_last_epoch): rows written "
            "before tlsearch recorded them, or runs without a test set; compare --weights best"
        )
    summary = summarize(runs, results.planned_seeds(), metrics=list(columns.values()))
    frame = pd.DataFrame(
        {
            "pt": [
                "MPT" if k == "mpt" else ("" if s is None else rename.get(s, s))
                for k, s in zip(summary["kind"], summary["pt_source"], strict=True)
            ],
            "pt_size": [
                None if k == "mpt" else v
                for k, v in zip(summary["kind"], summary["pt_size"], strict=True)
            ],
            "ft": [rename.get(t, t) for t in summary["ft_target"]],
            "ft_size": summary["ft_size"],
            "strategy": summary["strategy"],
            "sampling": summary["sampling"],
            "lr": summary["lr"],
            "ours_n": summary["n_ok"],
            "ours_failed": summary["n_failed"] + summary["n_diverged"],
            "ours_r2": summary[f"{columns['r2']}_mean"],
            "ours_r2_ci": summary[f"{columns['r2']}_ci"],
            "ours_mae": summary[f"{columns['mae']}_mean"],
            "ours_mae_ci": summary[f"{columns['mae']}_ci"],
        }
    )
    return _canonical(frame)


def compare(
    results: Results,
    anchors: pd.DataFrame,
    rename: dict[str, str] | None = None,
    weights: str = "best",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(matched, unmatched)``: our configurations joined with the paper's, and ours without
    a paper counterpart. ``matched`` has ``diff_*`` (ours - paper) and ``overlap_*`` (whether
    the two 95% intervals overlap; a point value counts as a zero-width interval). ``weights``:
    compare each run's kept weights (``best``) or its final epoch's (``last``)."""
    ours = our_summary(results, rename, weights)
    paper = paper_summary(anchors)
    merged = ours.merge(paper, on=list(JOIN_KEYS), how="left", indicator=True)
    unmatched = merged[merged["_merge"] == "left_only"][list(ours.columns)]
    matched = merged[merged["_merge"] == "both"].drop(columns="_merge").copy()
    for metric in ("r2", "mae"):
        matched[f"diff_{metric}"] = matched[f"ours_{metric}"] - matched[f"paper_{metric}"]
        matched[f"overlap_{metric}"] = [
            _overlap(a, ac, b, bc)
            for a, ac, b, bc in zip(
                matched[f"ours_{metric}"],
                matched[f"ours_{metric}_ci"],
                matched[f"paper_{metric}"],
                matched[f"paper_{metric}_ci"],
                strict=True,
            )
        ]
    order = ["experiment", *JOIN_KEYS, "sampling", "lr", "ours_n", "ours_failed", "paper_n"]
    rest = [c for c in matched.columns if c not in order]
    matched = matched[order + rest].sort_values(["experiment", "ft", "ft_size", "pt"])
    return matched.reset_index(drop=True), unmatched.reset_index(drop=True)


def _overlap(a: float, ac: float, b: float, bc: float) -> bool | None:
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return None
    ac = 0.0 if ac is None or pd.isna(ac) else float(ac)
    bc = 0.0 if bc is None or pd.isna(bc) else float(bc)
    return bool(abs(float(a) - float(b)) <= ac + bc)


def _pm(mean: object, ci: object, digits: int = 3) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    text = f"{float(mean):.{digits}f}"
    return text if ci is None or pd.isna(ci) else f"{text} ± {float(ci):.{digits}f}"


def comparison_table(matched: pd.DataFrame) -> pd.DataFrame:
    """The human table: ours vs paper with both intervals and the difference."""
    rows = []
    for _, m in matched.iterrows():
        pt = m["pt"] + ("" if pd.isna(m["pt_size"]) else f"({int(m['pt_size'])})")
        ft = f"{m['ft']}{'' if pd.isna(m['ft_size']) else int(m['ft_size'])}"
        rows.append(
            {
                "experiment": m["experiment"],
                "PT": pt or "–",
                "FT": ft,
                "strategy": m["strategy"],
                "n ours/paper": f"{int(m['ours_n'])}/{int(m['paper_n'])}",
                "R2 ours": _pm(m["ours_r2"], m["ours_r2_ci"]),
                "R2 paper": _pm(m["paper_r2"], m["paper_r2_ci"]),
                "ΔR2": _pm(m["diff_r2"], None),
                "MAE ours": _pm(m["ours_mae"], m["ours_mae_ci"], 4),
                "MAE paper": _pm(m["paper_mae"], m["paper_mae_ci"], 4),
                "ΔMAE": _pm(m["diff_mae"], None, 4),
                "CIs overlap (R2/MAE)": f"{_yn(m['overlap_r2'])}/{_yn(m['overlap_mae'])}",
            }
        )
    return pd.DataFrame(rows)


def _yn(value: object) -> str:
    if value is None or pd.isna(value):
        return "–"
    return "yes" if value else "no"
