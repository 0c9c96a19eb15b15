"""The Tune trial functions: a configuration's seeds (:func:`search_trial`), a PT job
(:func:`pretrain_trial`).

A trial runs one seed-run, or every seed of its configuration in turn (see
:mod:`tlsearch.search.plan.compile` for which). A seed-run whose row already exists is
skipped (its metric is read back), so a retried, resumed or re-run trial never trains a finished
seed again. Deterministic failures (:data:`~tlsearch.jobs.errors.DETERMINISTIC_ERRORS`) become
``failed`` rows and the trial goes on; any other exception propagates and Tune retries the trial
(``FailureConfig(max_failures)``). A trial holding a fraction of a GPU caps its CUDA memory at
that share, and a run that runs out of CUDA memory is retried once at half its batch size, then
recorded as ``failed`` with the reason (:mod:`tlsearch.search.run.gpu_memory`), never ``diverged``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tlsearch.jobs.checkpoints import pretrain_resume_uri, seed_run_resume_uri
from tlsearch.jobs.config import JobConfig
from tlsearch.jobs.errors import DETERMINISTIC_ERRORS, PretrainUnavailableError
from tlsearch.jobs.identity import pretrain_key
from tlsearch.results.paths import stored
from tlsearch.results.store import RunStore
from tlsearch.search.plan.compile import is_pretrain_point, seed_run_record
from tlsearch.search.plan.points import (
    Point,
    provenance_columns,
    pt_datasets,
    run_id_for,
    source_datasets,
)
from tlsearch.search.plan.records import SeedRunRecord
from tlsearch.search.plan.spec import SearchSpec
from tlsearch.search.run import prefilter
from tlsearch.search.run.claims import exclusive
from tlsearch.search.run.gpu_memory import cap_gpu_memory, retry_out_of_memory, trial_gpu_share
from tlsearch.search.run.job_fn import resolve_job_fn
from tlsearch.search.run.pretrain_cache import Pretrained, ensure_pretrained
from tlsearch.search.run.rows import base_row, error_text, finish, outcome_columns, trial_report
from tlsearch.storage.uri import is_remote, join, resolve, upload_dir

logger = logging.getLogger(__name__)

JobFn = Callable[[JobConfig, Path], dict[str, Any]]


class TrialEnv(BaseModel):
    """What every trial of a search shares (handed over with ``tune.with_parameters``).

    Attributes:
        spec: the resolved spec (absolute storage path).
        base_dir: the folder relative data paths are resolved against.
        job_fn: ``"module:function"`` replacing
            :func:`tlsearch.search.run.job_fn.run_search_job` (tests).
        pretrain_jobs: the search's PT jobs by key (one ``{"pt_key": key}`` trial each).
        seed_runs: the plan's seed-runs by run id (:class:`~tlsearch.search.plan.records.Plan`).
    """

    model_config = ConfigDict(extra="forbid")

    spec: SearchSpec
    base_dir: str
    job_fn: str | None = None
    pretrain_jobs: dict[str, JobConfig] = Field(default_factory=dict)
    seed_runs: dict[str, SeedRunRecord] = Field(default_factory=dict)

    def seed_run(self, point: Point, seed: int) -> SeedRunRecord:
        """The plan's record of seed-run ``(point, seed)``; compiled now when the plan has
        none (an Optuna cell's sampled point)."""
        record = self.seed_runs.get(run_id_for(self.spec, point, seed))
        return record or seed_run_record(self.spec, point, seed, self.base_dir)

    @property
    def search_dir(self) -> str:
        return join(self.spec.storage, self.spec.name)

    def store(self) -> RunStore:
        return RunStore.for_search(self.spec.storage, self.spec.name)

    def workdir(self, run_id: str) -> Path:
        """An empty local folder for a run's files (in storage when storage is local)."""
        if is_remote(self.spec.storage):
            folder = Path(tempfile.gettempdir()) / "tlsearch-work" / self.spec.name / run_id
        else:
            folder = Path(resolve(join(self.search_dir, "work", run_id))[1])
        shutil.rmtree(folder, ignore_errors=True)  # leftovers of an interrupted attempt
        folder.mkdir(parents=True)
        return folder

    def pt_lock(self, key: str) -> AbstractContextManager[object]:
        """The lock of PT job ``key``'s row in this search, cluster-wide
        (:func:`tlsearch.search.run.claims.exclusive` on ``<search>/locks/pt-<key>``: a file
        lock on local storage and NFS, a leased claim on object stores)."""
        return exclusive(join(self.search_dir, "locks", f"pt-{key}"))

    def publish(self, workdir: Path, run_id: str) -> str:
        """Copy a run's folder to storage (object stores); returns its checkpoint URI."""
        uri = join(self.search_dir, "work", run_id)
        if is_remote(self.spec.storage):
            upload_dir(workdir, uri)
        return join(uri, "model.pt")


def _node() -> str:
    """``hostname/<Ray node id prefix>`` of the process running the trial."""
    import socket

    import ray

    try:
        return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
    except Exception:  # not inside Ray
        return socket.gethostname()


def _trial_id() -> str | None:
    from ray import tune

    try:
        return tune.get_context().get_trial_id()
    except Exception:  # outside a Tune session (direct calls in tests)
        return None


def search_trial(config: dict[str, Any], env: TrialEnv, job_fn: JobFn | None = None) -> None:
    """Tune trial: run one seed-run (a point with ``"seed"``: grid experiments) or every seed
    of one configuration, reporting the running mean metric after each.

    The PT jobs' points (``{"pt_key": ...}``, ``{"scratch": ...}``) go to
    :func:`pretrain_trial`: one trainable serves a whole experiment, so Tune reuses its trial
    processes across PT jobs and configurations.
    """
    from ray import tune

    raw = config.get("point", config)
    if is_pretrain_point(raw):
        pretrain_trial(config, env, job_fn)
        return
    cap_gpu_memory(trial_gpu_share(env.spec.resources.gpu))
    fn = job_fn or resolve_job_fn(env.job_fn)
    point = Point.from_config(raw, env.spec)
    trial_id = _trial_id()
    search = env.spec.search
    rows: list[dict[str, Any]] = []
    for seed in [int(raw["seed"])] if "seed" in raw else env.spec.seeds:
        rows.append(run_seed(env, point, seed, fn, trial_id))
        tune.report(trial_report(rows, search.metric, str(search.mode)))


def pretrain_trial(config: dict[str, Any], env: TrialEnv, job_fn: JobFn | None = None) -> None:
    """Tune trial of a PT job: make sure its model exists and is recorded.

    A ``{"scratch": point}`` trial instead runs the seeds of a scratch configuration: the PT
    experiments of searches started before PT jobs joined the grid experiment hold such
    trials (filling the slots the PT jobs left free), and ``--resume`` restores them.
    """
    from ray import tune

    fn = job_fn or resolve_job_fn(env.job_fn)
    cap_gpu_memory(trial_gpu_share((env.spec.pretrain.resources or env.spec.resources).gpu))
    if "scratch" in config["point"]:
        point = Point.from_config(config["point"]["scratch"], env.spec)
        trial_id = _trial_id()
        rows = [run_seed(env, point, seed, fn, trial_id) for seed in env.spec.seeds]
        tune.report({"scratch_seeds_done": len(rows)})
        return
    row, _ = ensure_pt_row(env, env.pretrain_jobs[config["point"]["pt_key"]], fn, _trial_id())
    tune.report({"pt_ok": int(row["status"] == "ok"), "pt_run_id": row["run_id"]})


def run_seed(env: TrialEnv, point: Point, seed: int, job_fn: JobFn, trial_id: str | None) -> dict:
    """One seed-run: its existing row, or run it and write its row."""
    spec = env.spec
    record = env.seed_run(point, seed)
    run_id = record.run_id
    store = env.store()
    existing = store.read_row(run_id)
    if existing is not None:
        logger.info("seed-run %s already recorded (%s): skipped", run_id, existing["status"])
        return existing
    start = time.perf_counter()
    row = base_row(
        run_id,
        spec.name,
        trial_id,
        config_hash=record.config_hash,
        seed=seed,
        kind=point.kind,
        pt_source=point.pt_source,
        pt_size=point.pt_size,
        ft_target=point.target,
        ft_size=point.ft_size,
        strategy=point.strategy,
        sampling=point.sampling,
        lr=point.lr,
        node=_node(),
        **provenance_columns(spec, {point.target} | source_datasets(spec, point)),
    )
    try:
        skipped = prefilter.skip_reason(env, point, _checkpoint_of(env, job_fn, trial_id))
        if skipped is not None:
            logger.info("seed-run %s: %s", run_id, skipped)
            row.update(status="skipped", error=skipped, wall_seconds=time.perf_counter() - start)
            store.write(finish(row))
            return row
        job = record.job
        if record.pretrain is not None:
            pretrained, row["pt_run_id"] = pretrained_checkpoint(env, record, job_fn, trial_id)
            job = job.model_copy(update={"pretrained": pretrained})
        row["config_json"] = job.model_dump_json()

        def attempt(job: JobConfig) -> tuple[Path, dict[str, Any]]:
            workdir = env.workdir(run_id)  # emptied: a retry starts clean (or resumes)
            return workdir, job_fn(with_seed_run_checkpoints(env, job, run_id), workdir)

        (workdir, metrics), job, note = retry_out_of_memory(job, attempt, f"seed-run {run_id}")
        row["config_json"] = job.model_dump_json()  # the batch size it trained at
        row.update(outcome_columns(metrics))
        if note and row["status"] == "ok":
            row["error"] = note
        row["checkpoint_uri"] = stored(env.publish(workdir, run_id), spec.storage)
    except DETERMINISTIC_ERRORS as exc:
        logger.warning("seed-run %s failed (recorded, not retried): %s", run_id, error_text(exc))
        row.update(status="failed", error=error_text(exc))
    row["wall_seconds"] = time.perf_counter() - start
    store.write(finish(row))
    return row


def _checkpoint_of(env: TrialEnv, job_fn: JobFn, trial_id: str | None) -> Callable[[Point], str]:
    """The PT checkpoint of a prefilter candidate (the first seed's PT job)."""

    def checkpoint(candidate: Point) -> str:
        record = env.seed_run(candidate, env.spec.seeds[0])
        if record.pretrain is None:  # a checkpoint source
            return str(record.job.pretrained)
        return pretrained_checkpoint(env, record, job_fn, trial_id)[0]

    return checkpoint


def pretrained_checkpoint(
    env: TrialEnv, record: SeedRunRecord, job_fn: JobFn, trial_id: str | None
) -> tuple[str, str]:
    """The PT model seed-run ``record`` fine-tunes from (its local ``model.pt``, running or
    waiting for its PT job), and the PT row's run id.

    Raises:
        PretrainUnavailableError: the PT job failed or diverged.
    """
    assert record.pretrain is not None
    row, pretrained = ensure_pt_row(env, record.pretrain.job, job_fn, trial_id)
    if pretrained is None or row["status"] != "ok":
        raise PretrainUnavailableError(
            f"pre-training {row['run_id']} is {row['status']}: {row.get('error') or ''}".strip()
        )
    return pretrained.checkpoint, row["run_id"]


def ensure_pt_row(
    env: TrialEnv, job: JobConfig, job_fn: JobFn, trial_id: str | None
) -> tuple[dict[str, Any], Pretrained | None]:
    """The search's row of a PT job, running the job (or reusing the cache) when needed.

    Held under the PT job's row lock (:meth:`TrialEnv.pt_lock`): a fine-tuning trial that
    needs a PT job another trial is running waits for it, then reads its row (no second
    training, no second row, and a failed PT job is not tried again).
    """
    with env.pt_lock(pretrain_key(job)):
        return _ensure_pt_row(env, job, job_fn, trial_id)


def _ensure_pt_row(
    env: TrialEnv, job: JobConfig, job_fn: JobFn, trial_id: str | None
) -> tuple[dict[str, Any], Pretrained | None]:
    store = env.store()
    run_id = f"pt-{pretrain_key(job)}"
    row = store.read_row(run_id)
    if row is not None and row["status"] != "ok":
        return row, None
    job = _as_recorded(job, row)
    identity = {
        "config_hash": run_id[3:],
        "seed": job.seed,
        "kind": "pretrain",
        "pt_source": job.label,
        "pt_size": job.pt_size,
        "ft_target": job.excluded_target,
        "lr": job.train.get("learning_rate"),
        "config_json": job.model_dump_json(),
        "node": _node(),
        **provenance_columns(env.spec, pt_datasets(env.spec, job.label)),
    }
    start = time.perf_counter()
    try:
        pretrained, trained, note = retry_out_of_memory(
            job,
            lambda j: ensure_pretrained(with_pt_checkpoints(env, j), env.spec.storage, job_fn),
            f"PT job {run_id}",
        )
    except DETERMINISTIC_ERRORS as exc:
        logger.warning("PT job %s failed (recorded, not retried): %s", run_id, error_text(exc))
        row = base_row(run_id, env.spec.name, trial_id, **identity, error=error_text(exc))
        row.update(wall_seconds=time.perf_counter() - start, pt_cache_hit=False)
        store.write(finish(row))
        return row, None
    if row is None:
        identity["config_json"] = trained.model_dump_json()  # a smaller batch after an OOM
        row = base_row(run_id, env.spec.name, trial_id, **identity)
        row.update(outcome_columns(pretrained.metrics))
        if note and row["status"] == "ok":
            row["error"] = note
        row.update(wall_seconds=time.perf_counter() - start, pt_cache_hit=pretrained.cache_hit)
        if pretrained.cache_hit:  # metrics of the run that trained it; nothing was opened here
            row.update(graph_cache_hits=0, graph_cache_misses=0)
        row["checkpoint_uri"] = stored(join(pretrained.uri, "model.pt"), env.spec.storage)
        store.write(finish(row))
    return row, pretrained


def with_seed_run_checkpoints(env: TrialEnv, job: JobConfig, run_id: str) -> JobConfig:
    """``job`` saving its training state every ``checkpoint_every`` epochs (when set)."""
    every = env.spec.checkpoint_every
    if every is None:
        return job
    uri = seed_run_resume_uri(env.search_dir, run_id)
    return job.model_copy(update={"checkpoint_every": every, "resume_uri": uri})


def with_pt_checkpoints(env: TrialEnv, job: JobConfig) -> JobConfig:
    """PT ``job`` saving its training state every ``pretrain.checkpoint_every`` epochs (when
    set) where any retry of it, in any search on this storage, finds it; and restarting dead
    DDP workers up to ``max_failures`` times."""
    update: dict[str, Any] = {"max_failures": env.spec.max_failures}
    every = env.spec.pretrain.checkpoint_every
    if every is not None:
        uri = pretrain_resume_uri(env.spec.storage, pretrain_key(job))
        update.update(checkpoint_every=every, resume_uri=uri)
    return job.model_copy(update=update)


def _as_recorded(job: JobConfig, row: dict[str, Any] | None) -> JobConfig:
    """``job`` at the batch size its recorded row trained at: a PT job retried at a smaller
    batch after a CUDA out-of-memory has its model cached under that job's key."""
    if row is None or not row.get("config_json"):
        return job
    recorded = json.loads(row["config_json"]).get("train", {}).get("batch_size")
    if recorded is None or recorded == job.train.get("batch_size"):
        return job
    return job.model_copy(update={"train": {**job.train, "batch_size": recorded}})
