"""Compile a :class:`SearchSpec` into Tune experiments, configurations and jobs (no Ray here).

Vocabulary:

- a *configuration* (:class:`Point`): one FT target, FT size, PT source and size, strategy,
  sampling method and learning rate;
- a *seed-run*: one configuration with one seed; one Parquet row;
- a *trial*: one Tune trial. Where a searcher or scheduler ranks configurations by their mean
  over seeds (Optuna cells, ASHA), a trial is a configuration and runs all its seeds. In a plain
  grid experiment nothing ranks trials, so each seed-run is its own trial (its point carries
  ``"seed"``): small trials pack the trial slots better, and the end of an experiment waits for
  one seed-run instead of a configuration's five (:func:`trial_points`);
- a *PT job*: a pre-training run shared by every configuration that needs it (content-addressed,
  see :mod:`tlsearch.search.run.pretrain_cache`).

Tune's ``OptunaSearch`` rejects ``grid_search``, so with ``algorithm: optuna`` the axes not in
``search.optuna_axes`` form a grid of *cells*, and each cell is its own Tune experiment with its
own Optuna study and ``num_samples`` budget. With ``algorithm: grid`` one experiment holds every
configuration. Scratch baselines of an Optuna search run as one extra grid experiment.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from tlsearch.jobs.config import JobConfig, absolute_spec
from tlsearch.jobs.identity import pretrain_key, run_id, stable_hash
from tlsearch.search.plan.points import (
    SCRATCH,
    Point,
    build_job,
    config_hash,
    lr_values,
    pretrain_job,
    pt_sizes_for,
    sources_for,
)
from tlsearch.search.plan.records import ExperimentSummary, Plan, PretrainRecord, SeedRunRecord
from tlsearch.search.plan.spec import LogUniform, SearchSpec
from tlsearch.transfer.names import HEAD_ONLY_STRATEGIES

MAIN_EXPERIMENT = "main"
PRETRAIN_EXPERIMENT = "pretrain"
BASELINE_EXPERIMENT = "baselines"


@dataclass(frozen=True)
class Choice:
    """An Optuna categorical axis."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class LogRange:
    """An Optuna log-uniform axis."""

    low: float
    high: float


@dataclass
class ExperimentPlan:
    """One Tune experiment: a grid of points, or an Optuna space with a budget."""

    name: str
    algorithm: str  # grid or optuna
    seeds: list[int]
    points: list[dict[str, Any]] = field(default_factory=list)
    space: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 1
    label: str = ""

    @property
    def planned_trials(self) -> int:
        return len(self.points) if self.algorithm == "grid" else self.num_samples

    @property
    def planned_seed_runs(self) -> int:
        if self.algorithm != "grid":
            return self.num_samples * len(self.seeds)
        return sum(
            1 if "seed" in p else len(self.seeds) for p in self.points if not is_pretrain_point(p)
        )

    @property
    def per_seed(self) -> bool:
        """Whether each trial is one seed-run (its point carries ``"seed"``)."""
        return any("seed" in p for p in self.points)


def is_pretrain_point(point: dict[str, Any]) -> bool:
    """A PT job's trial point (``{"pt_key": ...}``; ``{"scratch": ...}`` in older searches)."""
    return "pt_key" in point or "scratch" in point


@dataclass
class SearchPlan:
    """Everything a search will run."""

    spec: SearchSpec
    experiments: list[ExperimentPlan]
    pretrain_jobs: list[JobConfig]

    @property
    def planned_seed_runs(self) -> int:
        return sum(e.planned_seed_runs for e in self.experiments)

    def summary(self) -> dict[str, Any]:
        """What ``plan.json`` records."""
        return {
            "search_name": self.spec.name,
            "planned_seed_runs": self.planned_seed_runs,
            "planned_pretrain_jobs": len(self.pretrain_jobs),
            "seeds": self.spec.seeds,
            "experiments": [
                {
                    "name": e.name,
                    "algorithm": e.algorithm,
                    "label": e.label,
                    "planned_trials": e.planned_trials,
                    "planned_seed_runs": e.planned_seed_runs,
                }
                for e in self.experiments
            ],
        }


# --- axes ---------------------------------------------------------------------------------


def scratch_points(spec: SearchSpec, lrs: list[float]) -> list[Point]:
    """Scratch baselines: every target, FT size, sampling method and learning rate."""
    combos = itertools.product(spec.targets, spec.ft_sizes, spec.sampling, lrs)
    return [Point(SCRATCH, t, n, s, lr) for t, n, s, lr in combos]


def transfer_points(spec: SearchSpec) -> list[Point]:
    """Every PT-FT configuration of a grid search."""
    points = []
    for target, ft_size, sampling, lr in itertools.product(
        spec.targets, spec.ft_sizes, spec.sampling, lr_values(spec)
    ):
        for source in sources_for(spec, target):
            kind = "mpt" if source.kind == "mpt" else "finetune"
            for pt_size, strategy in itertools.product(pt_sizes_for(spec, source), spec.strategies):
                points.append(
                    Point(kind, target, ft_size, sampling, lr, source.name, pt_size, strategy)
                )
    return points


def largest_first(points: list[Point]) -> list[Point]:
    """``points`` from the most to the least expensive, by FT size (all data first), then
    configurations that train the whole trunk before those that train only the head;
    otherwise in order.

    Tune starts grid trials in order; the long trials start first and the last ones to start
    are short: less time with one slot busy and the others idle at the end of an experiment
    (longest-processing-time-first). Scratch baselines stay before the transfer configurations
    (they need no PT model, so they fill the slots the PT jobs leave free).
    """

    def cost(p: Point) -> tuple[float, bool]:
        return (
            -(p.ft_size if p.ft_size is not None else math.inf),
            p.strategy in HEAD_ONLY_STRATEGIES,
        )

    return sorted(points, key=cost)


def trial_points(points: list[Point], seeds: list[int], per_seed: bool) -> list[dict[str, Any]]:
    """Tune's grid values: each configuration, or (``per_seed``) each configuration's seeds
    in turn, as ``{**point, "seed": seed}``."""
    if not per_seed:
        return [p.as_config() for p in points]
    return [{**p.as_config(), "seed": seed} for p in points for seed in seeds]


def optuna_cells(spec: SearchSpec) -> list[ExperimentPlan]:
    """One Optuna experiment per combination of the non-Optuna axes (a *cell*)."""
    axes = set(spec.search.optuna_axes)
    lr_axis = "lr" in axes or isinstance(spec.lr, LogUniform)
    cells = []
    for target, ft_size in itertools.product(spec.targets, spec.ft_sizes):
        sources = sources_for(spec, target)
        if "pt_source" in axes:
            heads: list[dict[str, Any]] = [
                {"pt_source": Choice(tuple(s.name for s in sources)), "pt_size": size}
                for size in spec.pt_sizes
            ]
        else:
            heads = [
                {"pt_source": s.name, "pt_size": size}
                for s in sources
                for size in pt_sizes_for(spec, s)
            ]
        rest = itertools.product(
            [None] if "strategy" in axes else spec.strategies,
            [None] if "sampling" in axes else spec.sampling,
            [None] if lr_axis else lr_values(spec),
        )
        for head, (strategy, sampling, lr) in itertools.product(heads, list(rest)):
            space = {
                "kind": "transfer",
                "target": target,
                "ft_size": ft_size,
                **head,
                "strategy": strategy if strategy else Choice(tuple(spec.strategies)),
                "sampling": sampling if sampling else Choice(tuple(spec.sampling)),
            }
            if lr is not None:
                space["lr"] = lr
            elif isinstance(spec.lr, LogUniform):
                space["lr"] = LogRange(*spec.lr.loguniform)
            else:
                space["lr"] = Choice(tuple(lr_values(spec)))
            fixed = {k: v for k, v in space.items() if not isinstance(v, Choice | LogRange)}
            label = ",".join(f"{k}={v}" for k, v in fixed.items() if k != "kind")
            cells.append(
                ExperimentPlan(
                    "optuna-" + stable_hash(fixed)[:10],
                    "optuna",
                    spec.seeds,
                    space=space,
                    num_samples=spec.search.num_samples,
                    label=label,
                )
            )
    return cells


# --- the plan -------------------------------------------------------------------------------


def compile_spec(spec: SearchSpec, base_dir: str = ".") -> SearchPlan:
    """All experiments and PT jobs of ``spec`` (paths resolved against ``base_dir``)."""
    experiments: list[ExperimentPlan] = []
    per_seed = spec.search.asha is None  # ASHA ranks configurations by their mean over seeds
    if spec.search.algorithm == "grid":
        points = scratch_points(spec, lr_values(spec)) if spec.scratch else []
        points = largest_first(points) + largest_first(transfer_points(spec))
        experiments.append(
            ExperimentPlan(
                MAIN_EXPERIMENT,
                "grid",
                spec.seeds,
                points=trial_points(points, spec.seeds, per_seed),
            )
        )
    else:
        if spec.scratch:
            lrs = lr_values(spec) or [1e-3]
            baseline = trial_points(largest_first(scratch_points(spec, lrs)), spec.seeds, per_seed)
            experiments.append(
                ExperimentPlan(BASELINE_EXPERIMENT, "grid", spec.seeds, points=baseline)
            )
        if spec.pt_sources:
            experiments += optuna_cells(spec)
    return SearchPlan(spec, experiments, planned_pretrain_jobs(spec, base_dir))


def planned_pretrain_jobs(spec: SearchSpec, base_dir: str) -> list[JobConfig]:
    """Every distinct PT job any configuration may need (each Optuna choice included)."""
    jobs: dict[str, JobConfig] = {}
    seeds = spec.seeds if spec.pretrain.seed_mode == "per_seed" else [spec.pretrain.seed]
    for target in spec.targets:
        for source in sources_for(spec, target):
            for pt_size, seed in itertools.product(pt_sizes_for(spec, source), seeds):
                point = Point("finetune", target, None, "random", 1e-3, source.name, pt_size)
                job = pretrain_job(spec, point, seed, base_dir)
                if job is not None:
                    jobs.setdefault(pretrain_key(job), job)
    return list(jobs.values())


def compile_plan(plan: SearchPlan, trial_spec: SearchSpec, base_dir: str) -> Plan:
    """The stored, typed plan of ``plan``: its summary, every PT job and every seed-run of its
    grid experiments, compiled from ``trial_spec`` (the spec as trials get it:
    :func:`tlsearch.search.plan.points.resolve_datasets`)."""
    summary = plan.summary()
    pretrain = [pretrain_record(job) for job in planned_pretrain_jobs(trial_spec, base_dir)]
    records = []
    for experiment in plan.experiments:
        if experiment.algorithm != "grid":
            continue  # an Optuna cell's seed-runs are compiled when its searcher samples them
        for raw in experiment.points:
            if is_pretrain_point(raw):
                continue
            point = Point.from_config(raw, trial_spec)
            for seed in [int(raw["seed"])] if "seed" in raw else experiment.seeds:
                records.append(seed_run_record(trial_spec, point, seed, base_dir))
    return Plan(
        **{k: summary[k] for k in ("search_name", "planned_seed_runs", "seeds")},
        planned_pretrain_jobs=summary["planned_pretrain_jobs"],
        experiments=[ExperimentSummary(**e) for e in summary["experiments"]],
        pretrain_jobs=pretrain,
        seed_runs=records,
    )


def seed_run_record(spec: SearchSpec, point: Point, seed: int, base_dir: str) -> SeedRunRecord:
    """Seed-run ``(point, seed)`` of ``spec`` (the trials' spec) with its id and its job."""
    digest = config_hash(spec, point)
    pt_job = pretrain_job(spec, point, seed, base_dir)
    pretrained = None
    if point.uses_pretraining:
        source = spec.source(str(point.pt_source))
        if source.kind == "checkpoint":
            pretrained = absolute_spec(str(source.checkpoint), base_dir)
    return SeedRunRecord(
        run_id=run_id(digest, seed),
        config_hash=digest,
        seed=seed,
        point=point,
        pretrain=None if pt_job is None else pretrain_record(pt_job),
        job=build_job(spec, point, seed, base_dir, pretrained),
    )


def pretrain_record(job: JobConfig) -> PretrainRecord:
    """A PT job with its key and its row's run id."""
    key = pretrain_key(job)
    return PretrainRecord(key=key, run_id=f"pt-{key}", job=job)
