"""The Python API: what the ``tlsearch`` command does, as functions for notebooks and scripts.

Every function here is what its subcommand runs (the command line only parses flags and prints),
and each is re-exported by ``tlsearch`` itself, loaded on first use (``import tlsearch`` imports
neither torch nor Ray)::

    import tlsearch

    run = tlsearch.train("generated:200", "runs/demo", epochs=20)      # one model
    s = tlsearch.run_search("search_spaces/quickstart.yaml", smoke=True)
    s.table                                   # one row per configuration (pandas)
    best = tlsearch.best_pair("target", results=s, out="best_pair/target")
    m = tlsearch.load_model(best.ensemble)    # the winner's models, one per seed
    m.predict(atoms_list)                     # id, mean, std per structure (pandas)

Structures for :func:`predict` / :meth:`Predictor.predict` may be pymatgen ``Structure``, ASE
``Atoms``, CIF/POSCAR paths or any data spec (``data.db`` with ``target=``, a folder...).
The search's own subpackage is ``tlsearch.search``, so its function is :func:`run_search`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from tlsearch.analysis.best_pair import BestPair
    from tlsearch.analysis.frame import Results
    from tlsearch.prediction import PredictInput, Predictor
    from tlsearch.search.spec import SearchSpec
    from tlsearch.search.status import SearchStatus
    from tlsearch.structures.objects import Errors
    from tlsearch.training.config import RunConfig

logger = logging.getLogger(__name__)


# --- single runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A finished run folder (``train``, ``pretrain``, ``finetune``, ``mpt_pretrain``).

    Attributes:
        out: the run folder (``model.pt``, ``metrics.json``, ``history.csv``, predictions...).
        metrics: the ``metrics.json`` dict (``test.mae``, ``val.r2``, ``best_epoch``...).
    """

    out: Path
    metrics: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.out / "model.pt"

    def history(self) -> pd.DataFrame:
        """Per-epoch losses and validation metrics (``history.csv``)."""
        import pandas as pd

        return pd.read_csv(self.out / "history.csv")

    def predictions(self, split: str = "test") -> pd.DataFrame:
        """``predictions_<split>.csv`` (``test`` or ``val``): id, target, prediction."""
        import pandas as pd

        return pd.read_csv(self.out / f"predictions_{split}.csv")

    def load_model(self, device: str = "auto") -> Predictor:
        """The trained model, ready to predict (:func:`load_model`)."""
        return load_model(self.model_path, device)


def run_config(
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """A :class:`~tlsearch.training.config.RunConfig` from a config and nested overrides.

    Args:
        config: a ``config.yaml`` path (e.g. a run's own), a mapping or a RunConfig.
        overrides: nested keys that win (``{"train": {"epochs": 5}}``); unknown keys are refused.

    Raises:
        ValueError: an unknown or invalid field (pydantic names it).
    """
    from tlsearch.training.config import RunConfig, load_run_config, merge_overrides

    if isinstance(config, RunConfig):
        return RunConfig.model_validate(merge_overrides(config.model_dump(), dict(overrides or {})))
    if isinstance(config, Mapping):
        return RunConfig.model_validate(merge_overrides(dict(config), dict(overrides or {})))
    return load_run_config(config, dict(overrides or {}))


def _run_fields(
    data: str | Path | None,
    out: str | Path | None,
    test: str | Path | None,
    target: str | None,
    recipe: Mapping[str, Any] | None,
    model: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    from tlsearch.training.config import merge_overrides

    fields: dict[str, Any] = {
        "data": None if data is None else str(data),
        "out_dir": out,
        "test": None if test is None else str(test),
        "target": target,
        "train": dict(recipe) if recipe else None,
        "model": dict(model) if model else None,
    }
    given = {k: v for k, v in fields.items() if v is not None}
    return merge_overrides(dict(overrides or {}), given)


def _finish(cfg: RunConfig, work: Any) -> Run:
    """Run ``work(cfg)`` logging into ``<out>/train.log``, as the command does."""
    from tlsearch.logutil import log_to_file

    with log_to_file(cfg.out_dir / "train.log"):
        metrics = work(cfg)
    return Run(Path(cfg.out_dir), metrics)


def train(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    test: str | Path | None = None,
    target: str | None = None,
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Run:
    """Train one model from scratch and evaluate it (``tlsearch train``).

    Args:
        data: training data spec (split 90:10 into train/validation), e.g. a jarvis json file,
            a folder with ``id_prop.csv``, ``data.db`` with ``target=``, ``generated:200``.
        out: run folder.
        test: held-out test data spec.
        target: property key to read (ASE databases, DataFrames, matminer tables).
        config: a run config (``config.yaml`` path, mapping or RunConfig) to start from.
        recipe: :class:`~tlsearch.training.config.TrainConfig` fields (``epochs``, ``seed``,
            ``batch_size``, ``learning_rate``, ``target_normalisation``...).
        model: :class:`~tlsearch.model.config.ALIGNNConfig` fields (``hidden_features``...).
        overrides: any other nested RunConfig keys (``{"cache_dir": None}``: graphs in memory).
        progress: progress bars.

    Returns:
        The :class:`Run` (its folder and ``metrics.json``).

    Raises:
        ValueError: an invalid config (fields named), unusable data, or a test set overlapping
            the training data. FileNotFoundError: missing data.
    """
    from tlsearch.training.run import train_run

    fields = _run_fields(data, out, test, target, recipe, model, overrides)
    cfg = run_config(config, fields)
    return _finish(cfg, lambda c: train_run(c, progress=progress))


def pretrain(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    size: int | None = None,
    test: str | Path | None = None,
    target: str | None = None,
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Run:
    """Pre-train on ``data`` (a seeded random subset of ``size``, all when None), as
    ``tlsearch pretrain``; the other arguments as :func:`train`. Its folder is a ``pretrained``
    source for :func:`finetune`."""
    from tlsearch.transfer.run import pretrain_run

    cfg = run_config(config, _run_fields(data, out, test, target, recipe, model, overrides))
    return _finish(cfg, lambda c: pretrain_run(c, size=size, progress=progress))


def finetune(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    pretrained: str | Path | None = None,
    strategy: str = "unfreeze_all",
    size: int | None = None,
    sampling: str = "random",
    train_frozen_bn: bool = False,
    test: str | Path | None = None,
    target: str | None = None,
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Run:
    """Fine-tune a pre-trained model on ``data`` (``tlsearch finetune``).

    Args:
        pretrained: a PT run folder, a tlsearch ``model.pt``, an MPT model or an alignn
            checkpoint; None with ``strategy="scratch"`` trains from scratch on the same path.
        strategy: an FT strategy (``unfreeze_all``, ``new_head``, ``last_layer``,
            ``interaction_2b``, ``interaction_3b``, ...; paper Sec. 2.4).
        size: FT training set size drawn from ``data`` (all when None).
        sampling: ``random``, ``weighted`` or ``uniform`` (paper Sec. 2.5).
        train_frozen_bn: let BatchNorm statistics of frozen layers update (the paper's code).
        others: as :func:`train`.
    """
    from tlsearch.transfer.run import finetune_run

    cfg = run_config(config, _run_fields(data, out, test, target, recipe, model, overrides))
    return _finish(
        cfg,
        lambda c: finetune_run(
            c, pretrained=pretrained, strategy=strategy, size=size, sampling=sampling,
            freeze_batchnorm_stats=not train_frozen_bn, progress=progress,
        ),
    )  # fmt: skip


def mpt_pretrain(
    datasets: Mapping[str, str],
    out: str | Path | None = None,
    *,
    exclude_target: str | None = None,
    exclude_data: Sequence[str] = (),
    head_layers: int = 1,
    loss_denominator: str | None = None,
    test: str | Path | None = None,
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Run:
    """Multi-property pre-training (``tlsearch mpt pretrain``; paper Sec. 2.6).

    Args:
        datasets: property name -> data spec (``{"GV": "gv.json.gz", "DC": "matminer:DC"}``).
        exclude_target: the FT target: all its values are masked.
        exclude_data: the target's FT and test sets: matching structures leave the corpus.
        head_layers: MLP layers per head.
        loss_denominator: ``n_properties`` (the paper's Eq. 1, default) or ``known``.
        others: as :func:`train`.
    """
    from tlsearch.training.config import merge_overrides
    from tlsearch.transfer.run import mpt_pretrain_run

    if not datasets:
        raise ValueError("mpt_pretrain needs datasets {name: spec, ...}")
    fields = _run_fields("mpt:" + "+".join(datasets), out, test, None, recipe, model, overrides)
    if loss_denominator is not None:
        fields = merge_overrides(fields, {"train": {"mpt_loss_denominator": loss_denominator}})
    cfg = run_config(config, fields)
    return _finish(
        cfg,
        lambda c: mpt_pretrain_run(
            c, dict(datasets), exclude=exclude_target, exclude_specs=list(exclude_data),
            head_layers=head_layers, progress=progress,
        ),
    )  # fmt: skip


# --- searches ----------------------------------------------------------------------------------


@dataclass
class Search:
    """A search folder (``<storage>/<name>``) and its status, as :func:`run_search` leaves it.

    Attributes:
        status: planned / completed / failed / diverged / remaining seed-runs, PT jobs.
        spec: the spec it ran (None for :func:`open_search`).
    """

    status: SearchStatus
    spec: SearchSpec | None = None
    _results: Results | None = field(default=None, repr=False)

    @property
    def search_dir(self) -> str:
        return self.status.search_dir

    @property
    def table(self) -> pd.DataFrame:
        """One row per configuration: its keys, seeds, failed, diverged, mean test MAE/R2."""
        import pandas as pd

        from tlsearch.search.status import TABLE_COLUMNS

        return pd.DataFrame(self.status.table, columns=list(TABLE_COLUMNS))

    @property
    def runs(self) -> pd.DataFrame:
        """Every seed-run row of the Parquet run log (PT jobs excluded), one per seed."""
        return self.results().seed_runs

    def results(self) -> Results:
        """The rows as the analysis reads them (:func:`load_runs`)."""
        if self._results is None:
            self._results = load_runs(self.search_dir)
        return self._results

    def summary(self) -> dict[str, Any]:
        """The status as a dict (``tlsearch runs --json``)."""
        return self.status.as_dict()

    def plot(self, png: str | Path | None = None) -> Path:
        """Test MAE per configuration (``<search>/test_mae.png`` unless ``png``)."""
        from tlsearch.search.quickplot import plot_test_mae

        return plot_test_mae(self.search_dir, png)

    def analyze(self, out: str | Path) -> Path:
        """The paper's figures and tables for this search (:func:`analyze`)."""
        return analyze(self, out)

    def best_pair(self, target: str, **kwargs: Any) -> BestPairResult:
        """:func:`best_pair` on this search's results."""
        return best_pair(target, results=self, **kwargs)

    def __repr__(self) -> str:
        return f"Search({self.search_dir!r}: {self.status.counts_line()})"


def run_search(
    spec: SearchSpec | str | Path | Mapping[str, Any],
    *,
    storage: str | None = None,
    name: str | None = None,
    resume: bool = False,
    allow_changed_spec: bool = False,
    smoke: bool = False,
    rehearse: bool = False,
    offline: bool = False,
    seeds: int | None = None,
    max_concurrent: int | None = None,
    tensorboard: bool = False,
    address: str | None = None,
    verbose: int = 0,
    base_dir: str | Path | None = None,
) -> Search:
    """Run (or resume) a search on Ray (``tlsearch search``) and return its :class:`Search`.

    A local Ray is started unless ``address`` names a cluster or this process already has one;
    a Ray started here is stopped before this returns (or raises).

    Args:
        spec: ``search_spaces/*.yaml``, the same as a mapping, or a SearchSpec.
        storage, name, max_concurrent, tensorboard: override the spec's.
        resume, allow_changed_spec, smoke, rehearse, offline, seeds: as the command's switches.
        address: a Ray cluster (``"auto"``, ``"ray://host:10001"``).
        verbose: Tune's console verbosity (0-2).
        base_dir: folder of relative paths in the spec (default: the current directory).

    Raises:
        ValueError: an invalid spec, changed spec on resume, missing data (all named).
        tlsearch.search.driver.SearchInterruptedError: stopped before finishing.
    """
    from tlsearch.search.session import prepare_spec, run_owning_ray

    base = None if base_dir is None else str(base_dir)
    overrides = {
        "storage": storage,
        "name": name,
        "max_concurrent": max_concurrent,
        "tensorboard": tensorboard or None,
    }
    prepared = prepare_spec(
        spec, overrides, smoke=smoke, rehearse=rehearse, offline=offline, seeds=seeds,
        base_dir=base,
    )  # fmt: skip
    status, _ = run_owning_ray(
        prepared, address=address, resume=resume, verbose=verbose, base_dir=base,
        allow_changed_spec=allow_changed_spec,
    )  # fmt: skip
    return Search(status, prepared)


def open_search(path: str | Path) -> Search:
    """The :class:`Search` of a search folder already on disk (``tlsearch runs``)."""
    from tlsearch.search.status import search_status

    return Search(search_status(str(path)))


# --- analysis ----------------------------------------------------------------------------------


def load_runs(path: str | Path | Search, search: str | None = None) -> Results:
    """Every seed-run row under ``path`` (a search folder, or a storage root holding several;
    local, ``s3://``, ``gs://``) as :class:`~tlsearch.analysis.frame.Results`; ``.runs`` is the
    DataFrame. ``search`` keeps one search of a storage root."""
    from tlsearch.analysis.frame import load_runs as read

    if isinstance(path, Search):
        return path.results() if search is None else read(path.search_dir, search)
    return read(path, search)


def _results(results: Any) -> Results:
    from tlsearch.analysis.frame import Results

    return results if isinstance(results, Results) else load_runs(results)


def analyze(results: str | Path | Search | Results, out: str | Path) -> Path:
    """Write the paper's figures and tables and ``report.html`` into ``out`` (``tlsearch
    analyze``); returns the report's path."""
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
    results: str | Path | Search | Results | None = None,
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
    from tlsearch.analysis.best_pair import export_checkpoints, justification, rank, winner_summary

    if (results is None) == (search is None):
        raise ValueError("best_pair needs results=... (computed) or search=SPEC (to run)")
    if search is not None:
        from tlsearch.analysis.fill import run_then_rank

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
    results: str | Path | Search | Results,
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


# --- prediction --------------------------------------------------------------------------------


def load_model(path: str | Path | Sequence[str | Path], device: str = "auto") -> Predictor:
    """A ``model.pt``, several, or an ensemble folder (``tlsearch best-pair``'s ``model/``),
    loaded once; ``.predict(structures)`` gives id, mean and std (the ensemble's spread)."""
    from tlsearch.prediction import Predictor

    return Predictor.load(path, device)


def predict(
    model: str | Path | Sequence[str | Path] | Predictor,
    data: PredictInput,
    *,
    out: str | Path | None = None,
    ids: Sequence[str] | None = None,
    batch_size: int = 64,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    target: str | None = None,
    data_home: str | Path | None = None,
    errors: Errors = "raise",
    progress: bool = False,
) -> pd.DataFrame:
    """Predict ``data`` with ``model`` (a path as :func:`load_model` takes, or a loaded one).

    Args:
        data: pymatgen ``Structure`` / ASE ``Atoms`` objects (one or a list), CIF/POSCAR paths,
            or a data spec string (a folder, ``data.db``, ``frames.extxyz``, a jarvis json...).
        out: also write the ``tlsearch predict`` CSV there.
        others: as :meth:`tlsearch.prediction.Predictor.predict`.

    Returns:
        ``id, mean, std[, target]`` per structure (one property; ``std`` is NaN for a single
        model), or ``mean_<name>, std_<name>...`` per property; ``attrs["rejected"]`` lists
        structures of a data spec that could not be used.
    """
    from tlsearch.prediction import Predictor

    predictor = model if isinstance(model, Predictor) else Predictor.load(model, device)
    result = predictor.run(
        data, ids=ids, batch_size=batch_size, cache_dir=cache_dir, target=target,
        data_home=data_home, errors=errors, progress=progress,
    )  # fmt: skip
    if out is not None:
        result.write_csv(out)
    return result.frame()


__all__ = [
    "BestPairResult",
    "Comparison",
    "Run",
    "Search",
    "analyze",
    "answer_text",
    "best_pair",
    "compare_paper",
    "finetune",
    "load_model",
    "load_runs",
    "mpt_pretrain",
    "open_search",
    "predict",
    "pretrain",
    "run_config",
    "run_search",
    "train",
]
