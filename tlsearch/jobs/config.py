"""What one training job is: :class:`JobConfig` and the dataset it reads, :class:`DataRef`.

A search compiles every seed-run and PT job into a :class:`JobConfig`
(:mod:`tlsearch.search.plan.points`); :mod:`tlsearch.jobs.run` runs it, and
:mod:`tlsearch.jobs.identity` names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMES = ("matminer:", "jarvis:", "generated:", "generated2d:")


class DataRef(BaseModel):
    """A dataset resolved for one job (a spec's ``DatasetSpec``).

    ``size`` structures are drawn from the training pool with ``sampling`` and the job's seed;
    ``None`` keeps the whole pool. Without ``test``, ``test_fraction`` of ``data`` (fixed by
    ``split_seed``) is the test set and never trained on.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    data: str
    test: str | None = None
    test_fraction: float = 0.1
    split_seed: int = 0
    target: str | None = None
    data_home: str | None = None
    size: int | None = None
    sampling: str = "random"
    allow_test_overlap: bool = False


class JobConfig(BaseModel):
    """One training job.

    Attributes:
        kind: ``scratch``, ``pretrain``, ``finetune`` or ``mpt_pretrain``.
        seed: seeds the sample, the split, the weights and the batch order.
        data: the training data (all kinds but ``mpt_pretrain``).
        mpt_data: the datasets of an MPT job.
        excluded_target: MPT only: the FT target whose values are masked out of the PT mix.
        pretrained: ``finetune``: the PT checkpoint (``model.pt`` or an alignn checkpoint).
        strategy: ``finetune``: the FT strategy.
        train / model / graphs: ``TrainConfig`` / ``ALIGNNConfig`` / ``GraphSettings`` fields.
        cache_dir: the shared graph cache (None: in memory).
        num_workers, cpus_per_worker, gpus_per_worker: PT jobs: DDP workers (> 1: Ray Train).
        label, pt_size: PT jobs: the source's name and size, for the results table.
        checkpoint_every, resume_uri: save the training state every this many epochs under
            ``resume_uri`` and resume from it (:mod:`tlsearch.jobs.checkpoints`); None: no
            mid-training checkpoints.
        max_failures: DDP PT jobs: how often Ray Train restarts dead workers (the spec's).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["scratch", "pretrain", "finetune", "mpt_pretrain"]
    seed: int = Field(ge=0)
    data: DataRef | None = None
    mpt_data: list[DataRef] = Field(default_factory=list)
    excluded_target: str | None = None
    pretrained: str | None = None
    strategy: str | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    graphs: dict[str, Any] = Field(default_factory=dict)
    cache_dir: str | None = None
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    label: str | None = None
    pt_size: int | None = None
    checkpoint_every: int | None = Field(None, ge=1)
    resume_uri: str | None = None
    max_failures: int = Field(2, ge=0)


def absolute_spec(text: str, base_dir: str) -> str:
    """A data spec with a relative path made absolute (schemes and URIs unchanged)."""
    if text.startswith(SCHEMES) or "://" in text:
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (Path(base_dir) / path).resolve())
