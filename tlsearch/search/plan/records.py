"""The compiled plan of a search: every PT job and seed-run with its id and its whole job.

:func:`tlsearch.search.plan.compile.compile_plan` turns a prepared spec into a :class:`Plan`
(frozen, typed, unknown keys refused); the driver stores it as ``<storage>/<search>/plan.json``
beside the runs, and trials execute its records: a trial's point and seed name a run id, and
the trial runs that record's job (:class:`SeedRunRecord`), filling in only what exists once the
search runs (the path of the PT model it fine-tunes from, mid-training checkpoints, a smaller
batch after a CUDA out-of-memory). A newcomer finds a seed-run's whole configuration, its PT
job included, in one record of ``plan.json``.

The seed-runs of Optuna cells are not known in advance (the searcher samples them); a trial
compiles such a record when its point is sampled, with the same function. ``plan.json`` files
written before the plan held records (summary keys only) read as a plan without records.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tlsearch.jobs.config import JobConfig
from tlsearch.search.plan.points import Point
from tlsearch.storage.uri import join, read_text

FILE = "plan.json"


class ExperimentSummary(BaseModel):
    """One Tune experiment: its name, searcher and size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    algorithm: str
    label: str = ""
    planned_trials: int
    planned_seed_runs: int


class PretrainRecord(BaseModel):
    """A PT job: its key (:func:`tlsearch.jobs.identity.pretrain_key`), its row's run id
    (``pt-<key>``) and the job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    run_id: str
    job: JobConfig


class SeedRunRecord(BaseModel):
    """One seed-run: one configuration with one seed, and one Parquet row.

    Attributes:
        run_id: ``<config hash>-s<seed>`` (:func:`tlsearch.search.plan.points.run_id_for`).
        config_hash: the configuration's hash (every seed shares it).
        seed: the seed.
        point: the configuration (a Tune trial's config without the seed).
        pretrain: the PT job the seed-run fine-tunes from (None: scratch, or a checkpoint
            source, whose path is the job's ``pretrained``).
        job: the job it runs; for a PT source its ``pretrained`` is filled in by the trial
            with the PT model's path.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    config_hash: str
    seed: int
    point: Point
    pretrain: PretrainRecord | None = None
    job: JobConfig


class Plan(BaseModel):
    """Everything a search will run, as ``plan.json`` stores it.

    The first keys are the summary ``tlsearch runs`` reads (planned counts, seeds,
    experiments); ``pretrain_jobs`` and ``seed_runs`` are the records (seed-runs of grid
    experiments; Optuna cells' seed-runs are compiled when sampled).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    search_name: str
    planned_seed_runs: int
    planned_pretrain_jobs: int
    seeds: list[int] = Field(default_factory=list)
    experiments: list[ExperimentSummary] = Field(default_factory=list)
    pretrain_jobs: list[PretrainRecord] = Field(default_factory=list)
    seed_runs: list[SeedRunRecord] = Field(default_factory=list)

    def seed_run(self, run_id: str) -> SeedRunRecord | None:
        """The record of seed-run ``run_id``, or None when the plan has none."""
        return next((r for r in self.seed_runs if r.run_id == run_id), None)

    def to_json(self) -> str:
        """``plan.json``'s text (indented: read by people too)."""
        return self.model_dump_json(indent=2)


def read_plan(search_dir: str) -> Plan | None:
    """The plan stored in ``search_dir`` (``plan.json``), or None before it is written."""
    text = read_text(join(search_dir, FILE))
    return None if text is None else Plan.model_validate_json(text)
