"""Run a search on Ray: plan -> (PT jobs + configurations) -> status.

PT jobs run once each, before the configurations that fine-tune from them. When the search has
a grid experiment first and its PT jobs need the same resources as its configurations
(:func:`merge_pretrain`), the PT jobs are the first trials of that experiment: one Tune
experiment, one set of trial processes (each imports torch once), no barrier between the
phases. A fine-tuning trial that starts while its PT job is still training waits for it (the
PT row lock in :func:`tlsearch.search.run.trainable.ensure_pt_row`). Otherwise (an Optuna search
without scratch baselines, ASHA, multi-worker PT jobs) a separate PT experiment runs first.

Storage layout of a search (``<storage>/<name>/``): ``plan.json`` (the compiled plan: every PT
job and seed-run with its job, :mod:`tlsearch.search.plan.records`) and ``spec.yaml`` (the spec as
given), ``runs/`` (one Parquet row per seed-run and PT job), ``tune/<experiment>/`` (Tune's
experiment state, what ``--resume`` restores), ``work/<run_id>/`` (each run's model and
predictions). PT models live beside the searches in ``<storage>/pretrained/`` and the graph
cache in ``<storage>/graphs/`` (local storage) so later searches reuse both.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pyarrow.fs as pafs
import yaml

from tlsearch.results.store import RunStore
from tlsearch.search.plan.compile import (
    PRETRAIN_EXPERIMENT,
    Choice,
    ExperimentPlan,
    LogRange,
    SearchPlan,
    compile_plan,
    compile_spec,
    is_pretrain_point,
)
from tlsearch.search.plan.datacheck import check_plan_data
from tlsearch.search.plan.points import resolve_datasets
from tlsearch.search.plan.prepare import resolve_storage
from tlsearch.search.plan.records import FILE as PLAN_FILE
from tlsearch.search.plan.records import Plan
from tlsearch.search.plan.spec import Resources, SearchSpec
from tlsearch.search.run.cluster_fit import check_cluster_fits
from tlsearch.search.run.pretrain_cache import remove_abandoned
from tlsearch.search.run.resume import capped, check_resume
from tlsearch.search.run.startup import (
    NO_PRESTART_ENV,
    explicit_loggers_only,
    has_explicit_loggers,
    quiet_pending_trials,
    scoped_env,
    terminate_as_interrupt,
    tune_callbacks,
)
from tlsearch.search.run.trainable import TrialEnv, search_trial
from tlsearch.search.watch.monitor import SearchMonitor
from tlsearch.search.watch.status import SearchStatus, resume_summary, search_status
from tlsearch.search.watch.tune_output import without_ray_banner
from tlsearch.storage.search_lock import one_driver
from tlsearch.storage.uri import join, resolve

logger = logging.getLogger(__name__)


#: Wall-clock phases of the last :func:`run_search` in this process (``time.time()`` seconds):
#: ``connect`` ``[start, end]`` and ``experiments`` ``[[name, start, end], ...]``, and the Ray
#: ``cluster``'s resources; read by ``tlsearch bench search`` to split a search's wall time.
LAST_PHASES: dict[str, Any] = {}


class SearchExistsError(ValueError):
    """The search already has Tune state and ``resume`` was not asked for."""


class SearchInterruptedError(RuntimeError):
    """Tune stopped before every trial finished (SIGINT); ``--resume`` continues it."""


def run_search(
    spec: SearchSpec,
    *,
    address: str | None = None,
    resume: bool = False,
    job_fn: Callable[..., dict[str, Any]] | None = None,
    base_dir: str | None = None,
    verbose: int = 1,
    allow_changed_spec: bool = False,
    monitor: SearchMonitor | None = None,
) -> SearchStatus:
    """Run (or resume) ``spec`` on Ray and return its status.

    Args:
        spec: the search (``storage`` may be relative: resolved against ``base_dir``).
        address: a Ray cluster (``"auto"``, ``"ray://host:10001"``...); None starts a local Ray
            unless one is already initialised in this process.
        resume: continue an interrupted search (``Tuner.restore``); finished seed-runs stay.
        job_fn: replaces :func:`tlsearch.search.run.job_fn.run_search_job` (tests).
        base_dir: folder for relative paths in the spec (default: the current directory).
        verbose: Tune's console verbosity (0-2).
        allow_changed_spec: resume even when the spec or its data changed since the search
            started (:func:`tlsearch.search.run.resume.check_resume`).
        monitor: watches the run log and Tune's trials while the experiments run (the console
            display, trackers; :mod:`tlsearch.search.watch.monitor`); the caller closes it.

    Raises:
        SearchExistsError: the search has Tune state and ``resume`` is False.
        SpecChangedError: ``resume`` with another spec or data than the search started with.
        DataUnavailableError: data the plan reads is missing or cannot be downloaded here.
        ClusterTooSmallError: a trial or PT job asks for more than any node (or, for a DDP
            job, the nodes together) of the cluster can give, and no autoscaler can add it
            (:func:`tlsearch.search.run.cluster_fit.check_cluster_fits`).
        SearchInterruptedError: the run was stopped before finishing.
        SearchBusyError: another driver is running this search
            (:func:`tlsearch.storage.search_lock.one_driver`).
    """
    base = os.path.abspath(base_dir or os.getcwd())
    spec = resolve_storage(spec, base)
    search_dir = join(spec.storage, spec.name)
    with one_driver(spec.storage, spec.name):
        return _run_search(
            spec, base, search_dir, address, resume, job_fn, verbose, allow_changed_spec, monitor
        )


def _run_search(
    spec: SearchSpec,
    base: str,
    search_dir: str,
    address: str | None,
    resume: bool,
    job_fn: Callable[..., dict[str, Any]] | None,
    verbose: int,
    allow_changed_spec: bool,
    monitor: SearchMonitor | None,
) -> SearchStatus:
    """:func:`run_search` once it holds the search."""
    plan = compile_spec(spec, base)
    trial_spec = resolve_datasets(spec, base)  # trials run in their own folders
    if resume:
        check_resume(search_dir, plan, trial_spec, base, allow_changed_spec)
    check_plan_data(plan, trial_spec, base)  # one clear error now, not a failed row per run
    LAST_PHASES.clear()
    LAST_PHASES.update(connect=[time.time()], experiments=[])
    connect(address)
    LAST_PHASES["connect"].append(time.time())
    check_cluster_fits(plan)  # a trial or PT job no node can ever hold: refused now
    _check_fresh(search_dir, plan, resume)
    stored = compile_plan(plan, trial_spec, base)  # what the trials execute
    write_plan(search_dir, plan.spec, stored)
    tidy_run_log(search_dir)
    remove_abandoned(spec.storage)  # PT jobs killed mid-training
    jobs = {record.key: record.job for record in stored.pretrain_jobs}
    env = TrialEnv(
        spec=trial_spec,
        base_dir=base,
        job_fn=spec.testing.job_fn,
        pretrain_jobs=jobs,
        seed_runs={record.run_id: record for record in stored.seed_runs},
    )
    logger.info(
        "search %s: %d planned seed-runs in %d experiment(s), %d PT job(s); results in %s",
        spec.name,
        plan.planned_seed_runs,
        len(plan.experiments),
        len(jobs),
        join(search_dir, "runs"),
    )
    if resume:
        logger.info("resuming search %s: %s", spec.name, resume_summary(search_status(search_dir)))
    if monitor is not None:
        monitor.start(search_dir, plan, LAST_PHASES.get("dashboard"))
    experiments = list(plan.experiments)
    pt_points = [{"pt_key": k} for k in jobs]
    if jobs and merge_pretrain(plan, resume and _restorable(env, PRETRAIN_EXPERIMENT)):
        first = experiments[0]
        experiments[0] = ExperimentPlan(
            first.name, "grid", first.seeds, points=pt_points + first.points, label=first.label
        )
    elif jobs:
        pt_plan = ExperimentPlan(PRETRAIN_EXPERIMENT, "grid", [0], points=pt_points)
        resources = spec.pretrain.resources or spec.resources
        run_experiment(pt_plan, search_trial, env, resources, resume, job_fn, verbose, monitor)
    for experiment in experiments:
        run_experiment(
            experiment, search_trial, env, spec.resources, resume, job_fn, verbose, monitor
        )
    if resume:
        rerun_missing(stored, env, job_fn, verbose, monitor)
    status = search_status(search_dir)
    logger.info("search %s finished: %s", spec.name, status.counts_line())
    return status


#: The Tune experiment that runs again the planned seed-runs and PT jobs a resume finds without
#: a row (:func:`rerun_missing`); a fresh one each time.
RERUN_EXPERIMENT = "rerun-missing"


def rerun_missing(
    stored: Plan,
    env: TrialEnv,
    job_fn: Callable[..., dict[str, Any]] | None,
    verbose: int,
    monitor: SearchMonitor | None = None,
) -> list[str]:
    """Run the planned seed-runs and PT jobs that have no row after the restored experiments
    finished; returns their run ids.

    A row deleted, or moved aside as unreadable (:func:`tlsearch.results.store.set_aside`),
    after its trial finished is never run by the restored experiment: Tune's saved state says
    that trial terminated, and a restore resumes only unfinished and errored trials. These
    seed-runs run as a fresh grid experiment (:data:`RERUN_EXPERIMENT`; its old state is
    deleted first), one trial each; run ids make this idempotent. Seed-runs of Optuna cells
    are not in the plan (their points are sampled), and ASHA stops configurations on purpose
    (their unrun seeds have no row): neither is rerun here.
    """
    store = env.store()
    missing_pt = [r for r in stored.pretrain_jobs if not store.exists(r.run_id)]
    missing = [] if env.spec.search.asha else [
        r for r in stored.seed_runs if not store.exists(r.run_id)
    ]  # fmt: skip
    if not missing and not missing_pt:
        return []
    ids = [r.run_id for r in missing_pt + missing]
    logger.warning(
        "%d planned seed-run(s) and %d PT job(s) have no row although their trials finished "
        "(deleted or unreadable rows): running them again (%s)",
        len(missing), len(missing_pt), ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else ""),
    )  # fmt: skip
    points = [{"pt_key": r.key} for r in missing_pt]
    points += [{**r.point.as_config(), "seed": r.seed} for r in missing]
    fs, path = resolve(experiment_path(env, RERUN_EXPERIMENT))
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
    rerun = ExperimentPlan(RERUN_EXPERIMENT, "grid", env.spec.seeds, points=points)
    run_experiment(rerun, search_trial, env, env.spec.resources, False, job_fn, verbose, monitor)
    return ids


def merge_pretrain(plan: SearchPlan, split_before: bool = False) -> bool:
    """Whether the PT jobs run as the first trials of the first (grid) experiment.

    Not when that could change what runs or how: the first experiment is an Optuna cell (its
    searcher would see the PT trials), ASHA (it stops trials by their metric), multi-worker PT
    jobs or PT trials with other resources than the configurations (Tune reuses a trial process
    only for equal resources), or a search resumed from a separate PT experiment
    (``split_before``: it keeps the layout it started with).
    """
    spec = plan.spec
    pt = spec.pretrain
    return not (
        split_before
        or not plan.experiments
        or plan.experiments[0].algorithm != "grid"
        or spec.search.asha
        or pt.num_workers > 1
        or (pt.resources is not None and pt.resources != spec.resources)
    )


def _restorable(env: TrialEnv, name: str) -> bool:
    from ray import tune

    return tune.Tuner.can_restore(experiment_path(env, name))


def connect(address: str | None) -> None:
    """Join ``address`` or start a local Ray (unless this process already has one)."""
    import ray

    if not ray.is_initialized():
        with scoped_env(NO_PRESTART_ENV if address is None else {}), without_ray_banner():
            context = ray.init(address=address)
        terminate_as_interrupt()  # after ray.init, which sets its own SIGTERM handler
        url = getattr(context, "dashboard_url", None)
        if url:
            LAST_PHASES["dashboard"] = "http://" + url.removeprefix("http://")
            logger.info("Ray dashboard: %s", LAST_PHASES["dashboard"])
    LAST_PHASES["cluster"] = ray.cluster_resources()
    logger.info("Ray resources: %s", LAST_PHASES["cluster"])


def write_plan(search_dir: str, spec: SearchSpec, plan: Plan) -> None:
    """Write ``plan.json`` (the compiled plan) and ``spec.yaml`` (the spec as given, what
    ``--resume`` compares) into the search folder."""
    fs, path = resolve(search_dir)
    fs.create_dir(path, recursive=True)
    files = {
        PLAN_FILE: plan.to_json(),
        "spec.yaml": yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
    }
    for name, text in files.items():
        with fs.open_output_stream(f"{path}/{name}") as out:
            out.write(text.encode("utf-8"))


def tidy_run_log(search_dir: str) -> None:
    """Delete temporary row files of killed writers; rewrite rows of older schema versions."""
    store = RunStore(join(search_dir, "runs"))
    store.remove_stale_temp()
    store.upgrade_old_files()


def experiment_path(env: TrialEnv, name: str) -> str:
    """Where Tune keeps one experiment's state."""
    return join(env.search_dir, "tune", name)


def _check_fresh(search_dir: str, plan: SearchPlan, resume: bool) -> None:
    from ray import tune

    if resume:
        return
    names = [PRETRAIN_EXPERIMENT] + [e.name for e in plan.experiments]
    if any(tune.Tuner.can_restore(join(search_dir, "tune", n)) for n in names):
        raise SearchExistsError(
            f"search {plan.spec.name!r} already ran in {search_dir}; pass --resume to continue it "
            "(recorded seed-runs are kept) or choose another name or storage"
        )


def run_experiment(
    experiment: ExperimentPlan,
    trial_fn: Callable[..., None],
    env: TrialEnv,
    resources: Resources,
    resume: bool,
    job_fn: Callable[..., dict[str, Any]] | None,
    verbose: int,
    monitor: SearchMonitor | None = None,
    rounds: int | None = None,
) -> Any:
    """Run (or restore and finish) one Tune experiment; returns its ``ResultGrid``.

    Tune retries a failed trial up to ``max_failures`` times only if it was running; one that
    fails while it starts (its actor's node dies, e.g. a preempted worker) ends errored at
    once. Such trials are run again here, by restoring the experiment, for at most
    ``rounds`` (default: the spec's ``max_failures``) more rounds.
    """
    from ray import tune

    from tlsearch.search.run.restore_limits import cap_restored

    phase = [experiment.name, time.time()]
    LAST_PHASES.setdefault("experiments", []).append(phase)
    path = experiment_path(env, experiment.name)
    restoring = resume and tune.Tuner.can_restore(path)
    if restoring and env.spec.max_concurrent:  # Tune restarts pending trials without a limit
        trial_fn = capped(trial_fn, env.spec.max_concurrent)
    trainable = tune.with_resources(
        tune.with_parameters(trial_fn, env=env, job_fn=job_fn),
        {"cpu": resources.cpu, "gpu": resources.gpu},
    )
    # a restored experiment's saved state is unpickled in Tuner.restore and again in fit()
    earlier = earlier_module_names() if restoring else contextlib.nullcontext()
    with quiet_pending_trials(), earlier:
        if restoring:
            logger.info("restoring experiment %s from %s", experiment.name, path)
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
            check_searcher(tuner, experiment)
            cap_restored(tuner, experiment_concurrency(experiment, env.spec))
        else:
            tuner = new_tuner(experiment, trainable, env, verbose)
        watching = monitor.fitting(tuner) if monitor is not None else contextlib.nullcontext()
        with explicit_loggers_only(has_explicit_loggers(tuner)), watching:
            results = tuner.fit()
        phase.append(time.time())
        saved = saved_trials(path)
    statuses = [trial.status for trial in saved]
    unfinished = sum(s not in ("TERMINATED", "ERROR") for s in statuses)
    missing = experiment.algorithm == "grid" and len(saved) < expected_grid_trials(
        experiment, [trial.point for trial in saved]
    )
    if unfinished or missing:
        raise SearchInterruptedError(
            f"experiment {experiment.name} stopped with {unfinished} unfinished trial(s); "
            "run again with --resume to finish it"
        )
    rounds = env.spec.max_failures if rounds is None else rounds
    # errored with retries left (at most max_failures failures counted): Tune did not retry them
    unretried = sum(t.status == "ERROR" and t.failures <= env.spec.max_failures for t in saved)
    if unretried and rounds > 0:
        logger.warning(
            "experiment %s: %d trial(s) failed while starting (e.g. their node died), which "
            "Tune does not retry: running them again (%d round(s) left)",
            experiment.name, unretried, rounds,
        )  # fmt: skip
        return run_experiment(
            experiment, trial_fn, env, resources, True, job_fn, verbose, monitor, rounds - 1
        )
    errored = statuses.count("ERROR")
    if errored:
        logger.warning("experiment %s: %d trial(s) errored after retries (see %s)",
                       experiment.name, errored, path)  # fmt: skip
    return results


class SavedTrial(NamedTuple):
    """A trial as saved in the experiment state: status, configuration point, failures."""

    status: str
    point: dict[str, Any]
    failures: int


def saved_trials(path: str) -> list[SavedTrial]:
    """Every trial as saved in the experiment state (what ``--resume`` will see).

    After a SIGINT, Tune saves the state and then stops the running trials, so the in-memory
    ``ResultGrid`` reports them as terminated; the saved state says they were still running.
    """
    from ray.tune import ExperimentAnalysis

    return [
        SavedTrial(str(trial.status), dict(trial.config.get("point") or {}), trial.num_failures)
        for trial in ExperimentAnalysis(path).trials
    ]


def expected_grid_trials(experiment: ExperimentPlan, saved_points: list[dict[str, Any]]) -> int:
    """How many trials the grid experiment has when complete.

    ``experiment.planned_trials``, except for an experiment started before grid trials became
    seed-runs (its saved configuration points have no ``"seed"``): restored, it keeps its one
    trial per configuration (and one per PT job).
    """
    saved_configs = [p for p in saved_points if not is_pretrain_point(p)]
    if not experiment.per_seed or not saved_configs or any("seed" in p for p in saved_configs):
        return experiment.planned_trials
    pt_trials = sum(is_pretrain_point(p) for p in experiment.points)
    # trial_points expands every configuration into one point per seed
    return pt_trials + (len(experiment.points) - pt_trials) // len(experiment.seeds)


def experiment_concurrency(experiment: ExperimentPlan, spec: SearchSpec) -> int | None:
    """``max_concurrent``; for an Optuna experiment without one, the cluster's trial slots
    (:func:`tlsearch.search.run.searchers.optuna_concurrency`: TPE must see results between its
    suggestions); for the PT experiment of DDP jobs what their workers leave room for
    (:func:`tlsearch.search.run.ddp_limits.ddp_trial_limit`)."""
    import ray

    from tlsearch.search.run.ddp_limits import ddp_trial_limit
    from tlsearch.search.run.searchers import optuna_concurrency

    if experiment.name != PRETRAIN_EXPERIMENT:
        if experiment.algorithm == "optuna":
            return optuna_concurrency(spec)
        return spec.max_concurrent
    return ddp_trial_limit(spec, ray.cluster_resources()) or spec.max_concurrent


def new_tuner(experiment: ExperimentPlan, trainable: Any, env: TrialEnv, verbose: int) -> Any:
    """A fresh ``tune.Tuner`` for ``experiment``."""
    from ray import tune

    spec = env.spec
    is_main = experiment.name != PRETRAIN_EXPERIMENT
    asha = is_main and spec.search.asha is not None
    # a metric only where a searcher or scheduler reads it: PT trials report none
    ranked = experiment.algorithm == "optuna" or asha
    tune_config = tune.TuneConfig(
        metric=spec.search.metric if ranked else None,
        mode=spec.search.mode if ranked else None,
        search_alg=optuna_searcher(spec) if experiment.algorithm == "optuna" else None,
        scheduler=asha_scheduler(spec) if asha else None,
        num_samples=experiment.num_samples if experiment.algorithm == "optuna" else 1,
        max_concurrent_trials=experiment_concurrency(experiment, spec),
        trial_dirname_creator=trial_dirname,
        reuse_actors=True,  # a trial process imports torch once, not once per configuration
    )
    run_config = tune.RunConfig(
        name=experiment.name,
        storage_path=join(env.search_dir, "tune"),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        callbacks=tune_callbacks(spec.tensorboard),
        verbose=verbose,
    )
    return tune.Tuner(
        trainable,
        param_space=param_space(experiment),
        tune_config=tune_config,
        run_config=run_config,
    )


def param_space(experiment: ExperimentPlan) -> dict[str, Any]:
    """Tune's param space: ``{"point": grid_search(points)}``, or Optuna domains + constants."""
    from ray import tune

    if experiment.algorithm == "grid":
        return {"point": tune.grid_search(experiment.points)}
    space: dict[str, Any] = {}
    for key, value in experiment.space.items():
        if isinstance(value, Choice):
            space[key] = tune.choice(list(value.values))
        elif isinstance(value, LogRange):
            space[key] = tune.loguniform(value.low, value.high)
        else:
            space[key] = value
    return space


def optuna_searcher(spec: SearchSpec) -> Any:
    """TPE, seeded, told of ASHA-stopped configurations as pruned
    (:class:`tlsearch.search.run.searchers.FullMeansOptunaSearch`)."""
    from tlsearch.search.run.searchers import optuna_searcher as searcher

    return searcher(spec)


def asha_scheduler(spec: SearchSpec) -> Any:
    """ASHA over seeds: a configuration may stop after ``grace_period`` seeds."""
    from ray.tune.schedulers import ASHAScheduler

    asha = spec.search.asha
    assert asha is not None
    return ASHAScheduler(
        time_attr="seeds_done",
        max_t=len(spec.seeds),
        grace_period=min(asha.grace_period, len(spec.seeds)),
        reduction_factor=asha.reduction_factor,
    )


def check_searcher(tuner: Any, experiment: ExperimentPlan) -> None:
    """Refuse a restored Optuna experiment whose searcher is not Optuna (Ray issue #30861)."""
    if experiment.algorithm != "optuna":
        return
    from ray.tune.search.optuna import OptunaSearch

    searcher = restored_search_alg(tuner)
    inner = getattr(searcher, "searcher", searcher)
    if not isinstance(inner, OptunaSearch):
        raise RuntimeError(
            f"experiment {experiment.name} was restored with search algorithm "
            f"{type(inner).__name__}, not OptunaSearch (Ray issue #30861); not continuing"
        )


def restored_search_alg(tuner: Any) -> Any:
    """The search algorithm a restored ``Tuner`` will use (Ray keeps it on the internal tuner)."""
    return tuner._local_tuner._tune_config.search_alg


#: Modules that Tune's saved experiments (``tuner.pkl``) written by earlier versions name, mapped
#: to the module that holds those names now: the search's modules moved into ``plan``/``run``/
#: ``watch`` (a pickle names a function by its module; ``trial_dirname`` was in
#: ``tlsearch.search.driver``).
EARLIER_MODULES = {"tlsearch.search.driver": "tlsearch.search.run.driver"}


@contextlib.contextmanager
def earlier_module_names() -> Iterator[None]:
    """While a saved experiment is restored and run: the module names of
    :data:`EARLIER_MODULES` resolve to today's modules (nothing else changes; removed after)."""
    added = [old for old in EARLIER_MODULES if old not in sys.modules]
    for old in added:
        sys.modules[old] = importlib.import_module(EARLIER_MODULES[old])
    try:
        yield
    finally:
        for old in added:
            sys.modules.pop(old, None)


def trial_dirname(trial: Any) -> str:
    """Short trial folder names (configs hold whole dicts)."""
    return f"trial_{trial.trial_id}"
