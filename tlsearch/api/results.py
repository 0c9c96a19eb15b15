"""The Python API of the analysis: :func:`load_runs`, :func:`analyze`, :func:`best_pair` and
:func:`compare_paper` (re-exported by :mod:`tlsearch.api`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tlsearch.api.prediction import load_model

if TYPE_CHECKING:
    import pandas as pd

    from tlsearch.analysis.best_pair import BestPair
    from tlsearch.analysis.frame import Results
    from tlsearch.prediction import Predictor


@runtime_checkable
class SearchFolder(Protocol):
    """A search's folder and its rows: what :class:`~tlsearch.api.searches.Search` offers (the
    functions here take one; searches.py sits above this module and imports it)."""

    @property
    def search_dir(self) -> str: ...

    def results(self) -> Results: ...


def load_runs(path: str | Path | SearchFolder, search: str | None = None) -> Results:
    """Every seed-run row under ``path`` (a search folder, or a storage root holding several;
    local, ``s3://``, ``gs://``) as :class:`~tlsearch.analysis.frame.Results`; ``.runs`` is the
    DataFrame. ``search`` keeps one search of a storage root."""
    # The analysis layer imports pandas and pyarrow (~0.5 s): loaded on use, here and below, so
    # that ``import tlsearch.api`` stays light (the CLI imports it for --help).
    from tlsearch.analysis.frame import load_runs as read

    if isinstance(path, SearchFolder):
        return path.results() if search is None else read(path.search_dir, search)
    return read(path, search)


def _results(results: Any) -> Results:
    from tlsearch.analysis.frame import Results  # pandas, pyarrow: loaded on use

    return results if isinstance(results, Results) else load_runs(results)


def analyze(results: str | Path | SearchFolder | Results, out: str | Path) -> Path:
    """Write the paper's figures and tables and ``report.html`` into ``out`` (``tlsearch
    analyze``); returns the report's path."""
    # pandas, pyarrow, matplotlib: loaded on use
    from tlsearch.analysis.report import analyze as write_report

    return write_report(_results(results), Path(out))


@dataclass
class BestPairResult:
    """The answer of :func:`best_pair`.

    Attributes:
        best: the ranking and its winner (:class:`~tlsearch.analysis.best_pair.BestPair`).
        results: the rows it ranked.
        summary: the answer as ``best_pair.json`` holds it (winner, test MAE, change vs
            scratch, p-value, negative-transfer flag...).
        justification: the top configurations with their evidence.
        out: folder of ``ranking.csv``, ``justification.md``, ``best_pair.json``.
        ensemble: the exported models' folder (``<out>/model``), None when not exported.
    """

    best: BestPair
    results: Results
    summary: dict[str, Any]
    justification: pd.DataFrame
    out: Path
    ensemble: Path | None

    @property
    def ranking(self) -> pd.DataFrame:
        """Every configuration, best first, with its scratch comparison."""
        return self.best.ranking

    @property
    def winner(self) -> dict[str, Any] | None:
        return self.summary.get("winner")

    def answer(self) -> str:
        """The answer in words (what ``tlsearch best-pair`` prints first)."""
        return answer_text(self.summary)

    def load_model(self, device: str = "auto") -> Predictor:
        """The winner's ensemble (one model per seed), ready to predict with its spread."""
        if self.ensemble is None:
            raise ValueError("no ensemble was exported (no eligible winner, or export=False)")
        return load_model(self.ensemble, device)


def best_pair(
    target: str,
    *,
    results: str | Path | SearchFolder | Results | None = None,
    search: str | Path | None = None,
    out: str | Path | None = None,
    ft_size: int | str | None = "auto",
    metric: str = "val_mae",
    top: int = 10,
    export: bool = True,
    storage: str | None = None,
    address: str | None = None,
) -> BestPairResult:
    """The best PT source / strategy / sampling / lr for ``target`` (``tlsearch best-pair``).

    Args:
        target: the FT target (a dataset name of the search spec).
        results: results already computed (a search folder, storage root, Search or Results).
        search: instead, a spec to run (or resume) first, plus what the ranking lacks.
        out: where ranking.csv, justification.md, best_pair.json and ``model/`` go (default
            ``./best_pair/<target>``).
        ft_size: FT size to compare at (``"auto"``: the largest with results; None: all data).
        metric: selection metric, ``val_mae``, ``val_rmse`` or ``val_r2`` (never a test one).
        top: configurations in the justification.
        export: copy the winner's checkpoints (one per seed) as an ensemble into ``<out>/model``.
        storage, address: with ``search``: the storage override and the Ray cluster.

    Raises:
        ValueError: neither or both of ``results``/``search``, a test metric, no results.
    """
    # pandas, pyarrow, scipy: loaded on use
    from tlsearch.analysis.best_pair import export_checkpoints, justification, rank, winner_summary

    if (results is None) == (search is None):
        raise ValueError("best_pair needs results=... (computed) or search=SPEC (to run)")
    if search is not None:
        # The search layer (pandas, pyarrow, the Ray driver): loaded when a search is to run, so
        # that ``import tlsearch.api`` stays light (the CLI imports it for --help).
        from tlsearch.api.fill import run_then_rank

        rows, best = run_then_rank(
            str(search), target, storage=storage, address=address, ft_size=ft_size,
            select_metric=metric,
        )  # fmt: skip
    else:
        rows = _results(results)
        best = rank(rows, target, ft_size=ft_size, select_metric=metric)
    folder = Path(out) if out is not None else Path("best_pair") / target
    folder.mkdir(parents=True, exist_ok=True)
    best.ranking.drop(columns=["run_ids"]).to_csv(folder / "ranking.csv", index=False)
    table = justification(best, top)
    (folder / "justification.md").write_text(table.to_markdown(index=False) + "\n")
    summary = winner_summary(best)
    ensemble = None
    if best.winner is not None and export:
        summary["ensemble"] = str(export_checkpoints(best, rows, folder / "model"))
        ensemble = folder / "model"
    (folder / "best_pair.json").write_text(json.dumps(summary, indent=2, default=str))
    return BestPairResult(best, rows, summary, table, folder, ensemble)


def answer_text(summary: dict[str, Any]) -> str:
    """A :func:`best_pair` summary in words: the winner, its test MAE, the change vs scratch."""
    size = summary["ft_size"] if summary["ft_size"] is not None else "all"
    if summary["winner"] is None:
        return (
            f"No eligible configuration for {summary['target']} at FT size {size} "
            "(every candidate has failed/diverged or missing seeds; see the table)."
        )
    win, mae = summary["winner"], summary["test_mae"]
    gain = summary["improvement_pct"]
    verdict = (
        "NEGATIVE TRANSFER: worse than scratch"
        if summary["negative_transfer"]
        else (
            "significantly better than scratch"
            if summary["significant"]
            else "not significantly different from scratch"
        )
    )
    gain_text = "no scratch baseline" if gain is None else _mae_change_text(gain)
    return (
        f"Best for {summary['target']} (FT size {size}), selected on "
        f"{summary['selected_on']}: {win['label']}\n  test MAE {mae['mean']:.4g} "
        f"(n={mae['n']}); {gain_text}; {verdict}"
        + (f" (paired p={summary['p_value']:.3g})" if summary["p_value"] is not None else "")
    )


def _mae_change_text(improvement_pct: float) -> str:
    """The paper's percentage change of MAE vs scratch (positive = lower MAE) in words."""
    if improvement_pct >= 0:
        return f"test MAE {improvement_pct:.1f}% lower than scratch"
    return f"test MAE {-improvement_pct:.1f}% higher than scratch"


@dataclass
class Comparison:
    """Our configurations next to the paper's numbers (:func:`compare_paper`).

    Attributes:
        matched: one row per (configuration, paper experiment) with both sides' mean and CI.
        unmatched: our configurations without a paper counterpart.
        table: ``matched`` formatted as printed (ours vs theirs, difference, overlap).
    """

    matched: pd.DataFrame
    unmatched: pd.DataFrame
    table: pd.DataFrame

    def markdown(self) -> str:
        """The table as Markdown (what ``tlsearch compare-paper`` prints)."""
        if self.table.empty:
            return "(no configuration matched)"
        return self.table.to_markdown(index=False)


def compare_paper(
    results: str | Path | SearchFolder | Results,
    *,
    anchors: str | Path | None = None,
    rename: Mapping[str, str] | None = None,
    experiments: Sequence[str] = (),
    out: str | Path | None = None,
    weights: str = "best",
) -> Comparison:
    """Our results next to the paper's own per-run metrics (``tlsearch compare-paper``).

    Args:
        results: a search folder, storage root, Search or Results.
        anchors: the paper's metrics CSV (default ``../shared/data/paper/anchors/
            paper_metrics.csv``).
        rename: our dataset names -> the paper's codes.
        experiments: only these paper experiments (``scratch``, ``pairwise_pt941``, ...).
        out: also write comparison.csv/.md and unmatched.csv there.
        weights: our test metrics from the weights each run kept (``best``: the headline) or
            from its final epoch's (``last``: what the paper's test predictions came from).

    Raises:
        ValueError: an experiment the anchors do not have (the known ones named).
        FileNotFoundError: no anchors file.
    """
    # pandas, pyarrow: loaded on use
    from tlsearch.analysis.compare import DEFAULT_ANCHORS, compare, comparison_table, load_anchors

    table = load_anchors(anchors if anchors is not None else DEFAULT_ANCHORS)
    if experiments:
        known = sorted(set(table["experiment"].dropna()))
        unknown = sorted(set(experiments) - set(known))
        if unknown:
            raise ValueError(
                f"experiment(s) {unknown} not in the anchors (--experiment); they have "
                f"{', '.join(known)}"
            )
        table = table[table["experiment"].isin(list(experiments))]
    matched, unmatched = compare(_results(results), table, dict(rename or {}), weights)
    comparison = Comparison(matched, unmatched, comparison_table(matched))
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        matched.to_csv(folder / "comparison.csv", index=False)
        (folder / "comparison.md").write_text(comparison.markdown() + "\n")
        unmatched.to_csv(folder / "unmatched.csv", index=False)
    return comparison
