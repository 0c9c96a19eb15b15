"""Experiment trackers of a search: MLflow through its own client, W&B through Ray's callback.

:class:`MlflowTracker` (``tlsearch search --mlflow [URI]``) logs the search as one parent run
of the MLflow experiment named after the search, and each seed-run (and PT job) as a child run
as soon as its Parquet row lands: its configuration as params, its metrics (val/test MAE, R2,
RMSE, physical-unit ones where there are, epochs, seconds), its per-epoch history
(``history.csv``) as step metrics ``epoch/<column>``, and its model file (with the history)
as artifacts. The rows are the source: a resumed search logs the rows its parent does not hold
yet (every child carries its ``tlsearch.run_id`` tag), into the same parent. The driver logs,
so trial processes need no tracker package or network access to the tracking server.

:class:`WandbTracker` (``--wandb PROJECT``) adds Ray Tune's ``WandbLoggerCallback``: one W&B
run per Tune trial (a seed-run in grid searches) with the trial's point as its config and what
the trial reports (the search metric, seeds done, ok/failed/diverged counts); without a
``WANDB_DIR``, offline runs lie in the trials' folders under ``<search>/tune/``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tlsearch.results.paths import locate
from tlsearch.results.store import RunStore
from tlsearch.search.watch.monitor import SearchState, Sink, describe
from tlsearch.storage.uri import is_remote, join, read_text, resolve

logger = logging.getLogger(__name__)

#: ``--mlflow`` without a URI: a SQLite store, :data:`DEFAULT_DB` in the search folder.
DEFAULT_MLFLOW = "default"
DEFAULT_DB = "mlflow.db"
#: MLflow 3 refuses its file store unless this is set (it is in maintenance mode there).
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"

PARAM_COLUMNS = (
    "kind", "pt_source", "pt_size", "ft_target", "ft_size", "strategy", "sampling", "lr",
    "seed", "batch_size", "config_hash", "pt_run_id", "search_name",
)  # fmt: skip
METRIC_COLUMNS = tuple(
    f"{part}_{name}{suffix}"
    for suffix in ("", "_phys")
    for part in ("val", "test")
    for name in ("mae", "r2", "rmse")
) + ("epochs_run", "best_epoch", "train_seconds", "wall_seconds", "structures_per_second")
ARTIFACT_FILES = ("model.pt", "history.csv")


def mlflow_uri(value: str, search_dir: str) -> str:
    """The tracking URI of ``--mlflow [URI]``: as given, or for :data:`DEFAULT_MLFLOW` a SQLite
    store in the search folder, ``sqlite:///<absolute path>/mlflow.db`` (what MLflow
    recommends; a plain ``mlflow ui --backend-store-uri <that URI>`` reads it)."""
    if value != DEFAULT_MLFLOW:
        return value
    if is_remote(search_dir):
        raise ValueError(
            "--mlflow without a URI keeps a SQLite store (mlflow.db) in the search folder, "
            f"which needs local storage, not {search_dir}; pass a tracking URI "
            "(http://..., sqlite:///...)"
        )
    return "sqlite:///" + resolve(join(search_dir, DEFAULT_DB))[1]


def artifact_root(uri: str) -> str | None:
    """Where a new experiment's artifacts go: beside a SQLite store's file
    (``<folder>/mlartifacts``; MLflow's default would be ``./mlruns`` in the current folder),
    else the store's default (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()


def is_file_store(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


class MlflowTracker(Sink):
    """Logs a search to MLflow (see the module docstring).

    Args:
        uri: the tracking URI (``file:///.../mlruns``, ``http://host:5000``, ``sqlite:///...``).
        experiment: the MLflow experiment (default: the search's name).
    """

    def __init__(self, uri: str, experiment: str | None = None) -> None:
        self.uri = uri
        self.experiment = experiment
        self.client: Any = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.search_dir = ""  # where rows' relative paths start (the search's folder)
        self.logged: set[str] = set()

    def start(self, state: SearchState, rows: list[dict[str, Any]]) -> None:
        self.search_dir = state.search_dir
        self.client = mlflow_client(self.uri)
        name = self.experiment or state.name
        found = self.client.get_experiment_by_name(name)
        self.experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(name, artifact_location=artifact_root(self.uri))
        )
        self.parent_id = self._parent(state)
        self.logged = self._logged_children()
        logger.info("MLflow: search run %s in experiment %r at %s", self.parent_id, name, self.uri)
        self.rows(state, rows)

    def rows(self, state: SearchState, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["run_id"] in self.logged:
                continue
            try:
                self.log_row(row)
            except Exception as exc:  # tried again at close()
                logger.warning("MLflow: seed-run %s not logged yet: %s", row["run_id"], exc)

    def close(self, state: SearchState, finished: bool) -> None:
        if self.client is None or self.parent_id is None:
            return
        self.rows(state, RunStore(join(state.search_dir, "runs")).rows())  # anything missed
        from mlflow.entities import Metric

        counts = {
            "seed_runs_completed": state.counts.get("ok", 0),
            "seed_runs_failed": state.counts.get("failed", 0),
            "seed_runs_diverged": state.counts.get("diverged", 0),
            "seed_runs_skipped": state.counts.get("skipped", 0),
            "pt_jobs_done": state.pt_done,
        }
        best = state.best()
        if best is not None:
            counts[f"best_{best.metric}"] = best.value
        stamp = _now_ms()
        metrics = [Metric(k, float(v), stamp, 0) for k, v in counts.items()]
        self.client.log_batch(self.parent_id, metrics=metrics)
        if best is not None:
            self.client.set_tag(self.parent_id, "tlsearch.best_configuration", best.config)
        self.client.set_terminated(self.parent_id, "FINISHED" if finished else "KILLED")

    # --- runs ------------------------------------------------------------------------------------

    def _parent(self, state: SearchState) -> str:
        """The search's parent run: the one logged for this search folder before, or new."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`tlsearch.search_dir` = '{_quote(state.search_dir)}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        tags = {"tlsearch.search_dir": state.search_dir, "tlsearch.role": "search"}
        run = self.client.create_run(self.experiment_id, run_name=state.name, tags=tags)
        params = {
            "search_name": state.name,
            "planned_seed_runs": state.planned,
            "planned_pt_jobs": state.planned_pretrain,
            "metric": state.metric,
            "mode": state.mode,
            "search_dir": state.search_dir,
        }
        self._log_params(run.info.run_id, params)
        spec_text = read_text(join(state.search_dir, "spec.yaml"))
        if spec_text:
            self.client.log_text(run.info.run_id, spec_text, "spec.yaml")
        return run.info.run_id

    def _logged_children(self) -> set[str]:
        """``tlsearch.run_id`` of every child of the parent (a resumed search's earlier rows)."""
        found: set[str] = set()
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}'",
                max_results=1000,
                page_token=token,
            )
            found |= {r.data.tags.get("tlsearch.run_id") for r in page} - {None}
            token = getattr(page, "token", None)
            if not token:
                return found

    def log_row(self, row: dict[str, Any]) -> str:
        """One seed-run (or PT job) row as a child run; returns its MLflow run id."""
        from mlflow.entities import Metric, Param, RunTag

        name = describe(row) + ("" if row["kind"] == "pretrain" else f" seed {row['seed']}")
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "tlsearch.run_id": row["run_id"],
            "tlsearch.kind": row["kind"],
            "tlsearch.status": row["status"],
        }
        if row.get("error"):
            tags["tlsearch.error"] = str(row["error"])[:5000]
        end = _timestamp_ms(row.get("finished_at"))
        start = None if end is None else end - int(1000 * (row.get("wall_seconds") or 0))
        run = self.client.create_run(self.experiment_id, start_time=start, tags=tags, run_name=name)
        run_id = run.info.run_id
        stamp = end or _now_ms()
        params = [Param(k, _text(row.get(k))) for k in PARAM_COLUMNS if row.get(k) is not None]
        metrics = [
            Metric(k, float(row[k]), stamp, 0) for k in METRIC_COLUMNS if row.get(k) is not None
        ]
        checkpoint = locate(row.get("checkpoint_uri"), self.search_dir)
        metrics += history_metrics(read_history(checkpoint), stamp)
        for first in range(0, max(len(metrics), 1), 1000):  # MLflow's batch limit
            self.client.log_batch(
                run_id,
                metrics=metrics[first : first + 1000],
                params=params if first == 0 else [],
                tags=[RunTag("tlsearch.config", name)] if first == 0 else [],
            )
        self._log_artifacts(run_id, checkpoint)
        status = "FINISHED" if row["status"] == "ok" else "FAILED"
        self.client.set_terminated(run_id, status, end_time=end)
        self.logged.add(row["run_id"])
        return run_id

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, _text(v)) for k, v in params.items()])

    def _log_artifacts(self, run_id: str, checkpoint_uri: str | None) -> None:
        """The model file and its history beside it (copied out of an object store first)."""
        if not checkpoint_uri:
            return
        folder = checkpoint_uri.rsplit("/", 1)[0]
        fs, path = resolve(folder)
        with tempfile.TemporaryDirectory(prefix="tlsearch-mlflow-") as tmp:
            for name in ARTIFACT_FILES:
                source = f"{path}/{name}"
                if fs.get_file_info(source).type.name != "File":
                    continue
                if is_remote(folder):
                    local = os.path.join(tmp, name)
                    with fs.open_input_stream(source) as src, open(local, "wb") as out:
                        out.write(src.read())
                    source = local
                self.client.log_artifact(run_id, source)


def mlflow_client(uri: str) -> Any:
    """MLflow's ``MlflowClient`` at ``uri`` (its file store allowed, see :data:`FILE_STORE_ENV`).

    Raises:
        ValueError: MLflow is not installed.
    """
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ValueError(
            "--mlflow needs MLflow's client: pip install 'tlsearch[track]' (or mlflow-skinny)"
        ) from exc
    if is_file_store(uri):
        os.environ.setdefault(FILE_STORE_ENV, "true")
    if uri.startswith("sqlite:///"):  # SQLite creates the file, not its folder
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def read_history(checkpoint_uri: str | None) -> list[dict[str, str]]:
    """The rows of ``history.csv`` beside a run's model (empty when there is none)."""
    if not checkpoint_uri:
        return []
    text = read_text(checkpoint_uri.rsplit("/", 1)[0] + "/history.csv")
    return list(csv.DictReader(io.StringIO(text))) if text else []


def history_metrics(history: Iterable[dict[str, str]], stamp: int) -> list[Any]:
    """Per-epoch step metrics ``epoch/<column>`` (step = the epoch)."""
    from mlflow.entities import Metric

    out = []
    for number, epoch in enumerate(history, start=1):
        step = int(float(epoch.get("epoch") or number))
        for key, value in epoch.items():
            if key == "epoch" or value in (None, ""):
                continue
            try:
                out.append(Metric(f"epoch/{key}", float(value), stamp, step))
            except ValueError:
                continue
    return out


class WandbTracker(Sink):
    """Ray Tune's ``WandbLoggerCallback`` on every experiment of the search (see the module
    docstring); ``WANDB_MODE=offline`` keeps the runs local (``wandb sync`` uploads them)."""

    def __init__(self, project: str, group: str | None = None) -> None:
        try:
            import wandb  # noqa: F401
        except ImportError as exc:
            raise ValueError("--wandb needs the wandb package: pip install wandb") from exc
        self.project = project
        self.group = group

    def start(self, state: SearchState, rows: list[dict[str, Any]]) -> None:
        self.group = self.group or state.name

    def tune_callbacks(self) -> list[Any]:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # Ray's W&B actors run in worker processes, which do not see this process's later
        # environment: WANDB_MODE / WANDB_DIR reach their wandb.init as arguments.
        init = {key.lower(): os.environ[f"WANDB_{key}"] for key in ("MODE", "DIR")
                if os.environ.get(f"WANDB_{key}")}  # fmt: skip
        return [WandbLoggerCallback(project=self.project, group=self.group, **init)]


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def _timestamp_ms(value: Any) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
