"""The parts of a search spec: datasets, PT sources, search algorithm, resources, PT options.

:class:`tlsearch.search.plan.spec.SearchSpec` composes them. Every model rejects unknown keys with a
message naming the key and the allowed ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from tlsearch.transfer.names import STRATEGY_NAMES

#: FT strategies a search can ask for (scratch baselines are planned separately).
STRATEGIES = tuple(name for name in STRATEGY_NAMES if name != "scratch")
Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]
Sampling = Literal["random", "weighted", "uniform"]
Metric = Literal["val_mae", "val_rmse", "val_r2", "test_mae", "test_rmse", "test_r2"]
OptunaAxis = Literal["pt_source", "strategy", "sampling", "lr"]
PAPER_CODES = ("BG", "FE", "GV", "PH", "DC", "PZ", "EBG")
PLACEHOLDERS = ("size", "trial", "seed")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
RAY_RESOURCE_UNIT = 1e-4  # Ray rounds resource requests to this unit


class StrictModel(BaseModel):
    """A pydantic model whose unknown-key errors list the allowed keys."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in set(data) - set(cls.model_fields))
            if unknown:
                allowed = ", ".join(cls.model_fields)
                raise ValueError(f"unknown key(s) {unknown}; allowed: {allowed}")
        return data


class DatasetSpec(StrictModel):
    """One dataset: any data spec the core accepts, optionally with placeholders.

    ``data`` and ``test`` may contain ``{size}`` (the requested size: the files already have it,
    nothing is subsampled), ``{trial}`` (seed + 1, the paper's trial numbers), ``{seed}`` and any
    name from the spec's ``vars``. Without ``test``, a fixed ``test_fraction`` of ``data`` (drawn
    with ``split_seed``, the same for every run) is held out as the test set. ``normalise``
    overrides ``train.target_normalisation`` for jobs on this dataset (e.g. ``paper`` for raw
    matminer values next to the paper's already-normalised files). ``property`` names what the
    target measures (default: the dataset's name): datasets of one property are never paired
    with each other, and an MPT mix masks the FT target's property. ``test_fraction: 0`` holds
    nothing out (a PT pool: the paper pre-trained on whole datasets; as an FT target it then
    has no test metrics). ``note`` is free text copied into every row that uses the dataset
    (``data_note``), e.g. that its test set is a stand-in. ``allow_test_overlap: true`` lets
    its jobs run when ``test`` holds structures identical to training ones (refused otherwise).
    """

    data: str
    test: str | None = None
    test_fraction: float = Field(0.1, ge=0, lt=1)
    split_seed: int = Field(0, ge=0)
    target: str | None = None
    data_home: str | None = None
    normalise: Literal["none", "paper", "standardise"] | None = None
    property: str | None = None
    note: str | None = None
    allow_test_overlap: bool = False


class PretrainSource(StrictModel):
    """A PT source: a dataset, an MPT mix of datasets, or an existing checkpoint.

    Attributes:
        name: label in results (default: the dataset name, ``MPT`` or the checkpoint's stem).
        dataset: a key of ``datasets``.
        mpt: datasets pre-trained on together (multi-property PT, paper Sec. 2.6).
        exclude_target: MPT only: drop the FT target's own property from the PT mix (the paper).
        checkpoint: an existing ``model.pt`` or alignn checkpoint (no PT job is run).
        sizes: PT sizes of this source (default: the spec's ``pt_sizes``; datasets only).
    """

    name: str | None = None
    dataset: str | None = None
    mpt: list[str] | None = None
    exclude_target: bool = True
    checkpoint: str | None = None
    sizes: list[PositiveInt | None] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PretrainSource:
        given = [k for k in ("dataset", "mpt", "checkpoint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a PT source needs exactly one of dataset, mpt, checkpoint; got {given or 'none'}"
            )
        if self.sizes is not None and self.dataset is None:
            raise ValueError("sizes applies to dataset sources only")
        if self.name is None:
            if self.dataset is not None:
                self.name = self.dataset
            elif self.mpt is not None:
                self.name = "MPT"
            else:
                self.name = Path(str(self.checkpoint)).stem
        return self

    @property
    def kind(self) -> Literal["dataset", "mpt", "checkpoint"]:
        if self.dataset is not None:
            return "dataset"
        return "mpt" if self.mpt is not None else "checkpoint"


class LogUniform(StrictModel):
    """A learning-rate range sampled log-uniformly (Optuna only): ``{loguniform: [1e-5, 1e-2]}``."""

    loguniform: tuple[PositiveFloat, PositiveFloat]

    @model_validator(mode="after")
    def _ordered(self) -> LogUniform:
        if self.loguniform[0] >= self.loguniform[1]:
            raise ValueError(f"loguniform needs low < high, got {list(self.loguniform)}")
        return self


class Asha(StrictModel):
    """Early stopping of poor configurations after fewer seeds (time axis: seeds completed)."""

    grace_period: PositiveInt = 1
    reduction_factor: float = Field(2.0, gt=1)


class Prefilter(StrictModel):
    """Fine-tune from the ``keep`` best-ranked PT sources of each target only.

    Before a target's first transfer seed-run, every PT source of it is scored on the target's
    FT sample (``tlsearch rank-sources``: a ridge probe's leave-one-out MAE, ``probe_mae``, or
    LogME, ``logme``, on the frozen trunk's features); the seed-runs of the other sources are
    recorded as ``skipped`` rows naming their rank (:mod:`tlsearch.search.run.prefilter`). Off by
    default: the estimates were only weakly predictive in the checks so far.
    """

    keep: PositiveInt
    by: Literal["probe_mae", "logme"] = "probe_mae"


class SearchAlgorithm(StrictModel):
    """How configurations are chosen.

    Attributes:
        algorithm: ``grid`` (every combination) or ``optuna`` (TPE over ``optuna_axes``, one study
            per combination of the other axes, ``num_samples`` configurations each).
        metric: what the searcher sees (mean over the seeds; validation by default, so the test
            set never steers the search). ``mode`` defaults to max for R2, min otherwise.
        prefilter: skip the lowest-ranked PT sources of each target (:class:`Prefilter`).
    """

    algorithm: Literal["grid", "optuna"] = "grid"
    num_samples: PositiveInt = 10
    seed: int = 0
    metric: Metric = "val_mae"
    mode: Literal["min", "max"] | None = None
    optuna_axes: list[OptunaAxis] = Field(default_factory=lambda: ["strategy", "sampling", "lr"])
    asha: Asha | None = None
    prefilter: Prefilter | None = None

    @model_validator(mode="after")
    def _mode(self) -> SearchAlgorithm:
        if self.mode is None:
            self.mode = "max" if self.metric.endswith("r2") else "min"
        if self.prefilter is not None and "pt_source" in self.optuna_axes:
            raise ValueError(
                "search.prefilter cannot be used when Optuna samples pt_source (its study "
                "would keep sampling skipped sources); remove pt_source from optuna_axes"
            )
        return self


def check_gpu_count(value: float, name: str) -> float:
    """``value`` as Ray accepts a GPU request: a fraction of one GPU, or whole GPUs.

    Raises:
        ValueError: a fraction above 1 (``1.5``), or finer than Ray's 0.0001 unit.
    """
    if value > 1 and not float(value).is_integer():
        raise ValueError(
            f"{name} {value:g}: above 1 a GPU request must be a whole number (Ray's rule: a "
            "fraction of one GPU, such as 0.25, or whole GPUs, such as 2)"
        )
    if 0 < value < RAY_RESOURCE_UNIT:
        raise ValueError(f"{name} {value:g}: Ray's smallest resource unit is 0.0001")
    return value


class Resources(StrictModel):
    """Ray resources of one trial (one process): ``gpu`` may be a fraction such as 0.25 (the
    trial then caps its CUDA memory at that share of the GPU); above 1 whole GPUs only."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: float) -> float:
        return check_gpu_count(value, "gpu")


class PretrainSpec(StrictModel):
    """How PT jobs run.

    Attributes:
        seed_mode: ``shared``: one PT model (seed ``seed``) serves every FT seed; ``per_seed``:
            FT seed k uses a PT model trained with seed k.
        train: training-recipe overrides for PT jobs (on top of the spec's ``train``).
        num_workers: more than 1 runs PT as a Ray Train ``TorchTrainer`` (DDP) from its trial.
        cpus_per_worker / gpus_per_worker: resources of each DDP worker; ``gpus_per_worker``
            only with ``num_workers > 1`` and then whole GPUs (NCCL rejects two ranks on one
            GPU). A one-worker PT job trains in its trial: give it a GPU (or a fraction of
            one) with ``resources``.
        resources: resources of a PT trial (default: the spec's ``resources``).
        checkpoint_every: save a PT job's training state every this many epochs in the
            storage (``pretrained/_resume/<key>``), so a preempted or failed job resumes
            there when Tune or Ray Train retries it (:mod:`tlsearch.jobs.checkpoints`);
            null: never (a retry starts again from epoch 1).
    """

    seed_mode: Literal["shared", "per_seed"] = "shared"
    seed: int = Field(0, ge=0)
    train: dict[str, Any] = Field(default_factory=dict)
    num_workers: PositiveInt = 1
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    resources: Resources | None = None
    checkpoint_every: PositiveInt | None = 10

    @model_validator(mode="after")
    def _ddp_gpus(self) -> PretrainSpec:
        gpus, workers = self.gpus_per_worker, self.num_workers
        check_gpu_count(gpus, "gpus_per_worker")
        if gpus and workers == 1:
            raise ValueError(
                f"gpus_per_worker {gpus:g} with num_workers 1: gpus_per_worker is what each "
                "DDP worker gets (num_workers > 1); a one-worker PT job trains in its trial, "
                f"so give the trial the GPU instead: pretrain: {{resources: {{gpu: {gpus:g}}}}}"
            )
        if 0 < gpus < 1:
            raise ValueError(
                f"gpus_per_worker {gpus:g} with num_workers {workers}: DDP workers need whole "
                "GPUs (NCCL rejects two ranks on one GPU); use gpus_per_worker: 1, or "
                f"num_workers: 1 with pretrain: {{resources: {{gpu: {gpus:g}}}}}"
            )
        return self


class TestingHooks(StrictModel):
    """For tests only: ``job_fn: "module:function"`` replaces the real job function,
    ``rank_fn`` the PT-source scorer of ``search.prefilter``
    (:func:`tlsearch.search.run.prefilter.score_with_trunk`'s signature)."""

    job_fn: str | None = None
    rank_fn: str | None = None
