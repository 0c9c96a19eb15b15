"""The one adapter between jobs and the training code: :func:`run_job`.

:func:`run_job` holds out the test set when the dataset has no explicit one (``pool.json`` and
``test.json`` in the work folder, fixed by the dataset's ``split_seed``) and hands the job to:

- ``scratch``: :func:`tlsearch.training.run.train_run` on an FT-style sample of the pool;
- ``pretrain`` / ``finetune`` / ``mpt_pretrain``: ``tlsearch.transfer.run.pretrain_run`` /
  ``finetune_run`` / ``mpt_pretrain_run``.

A PT job on several DDP workers (``num_workers > 1``) runs on Ray Train instead
(:func:`tlsearch.search.run.ddp.run_ddp_pretrain`, which the search's job function picks).

Every job function returns a metrics dict like ``train_run``'s (``test``/``val`` metrics, nested
or as ``"test.mae"`` keys, ``best_epoch``, ``epochs_run``, ``diverged``, ...). Tests pass a fake
job function with the same signature ``(job, workdir) -> dict``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlsearch.jobs.config import DataRef, JobConfig
from tlsearch.jobs.errors import DETERMINISTIC_ERRORS
from tlsearch.structures.generate import write_jarvis_json
from tlsearch.structures.load import load_data
from tlsearch.structures.overlap import drop_from_test
from tlsearch.training.config import RunConfig
from tlsearch.training.run import train_run
from tlsearch.training.splits import train_val_split
from tlsearch.transfer import run as transfer
from tlsearch.transfer.sampling import sample_indices

if TYPE_CHECKING:
    from tlsearch.jobs.checkpoints import StorageCheckpoints


def run_job(job: JobConfig, workdir: Path | str) -> dict[str, Any]:
    """Run ``job`` with its outputs (``model.pt``, metrics, predictions) in ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if job.kind == "pretrain" and job.num_workers > 1:
        raise NotImplementedError(
            f"a PT job on {job.num_workers} DDP workers runs on Ray Train "
            "(tlsearch.search.run.ddp.run_ddp_pretrain), not in this process"
        )
    checkpoints = storage_checkpoints(job)
    try:
        if job.kind == "scratch":
            metrics = run_scratch(job, workdir, checkpoints)
        else:
            metrics = run_transfer(job, workdir, checkpoints)
    except DETERMINISTIC_ERRORS:
        if checkpoints is not None:
            checkpoints.clear()  # recorded as failed, never retried: nothing to resume
        raise
    if checkpoints is not None:
        checkpoints.clear()  # finished: nothing to resume
    return metrics


def storage_checkpoints(job: JobConfig) -> StorageCheckpoints | None:
    """The job's :class:`~tlsearch.jobs.checkpoints.StorageCheckpoints`, or None."""
    if job.checkpoint_every is None or job.resume_uri is None:
        return None
    # pyarrow (storage filesystems): only jobs that checkpoint into a search's storage need it;
    # the core runs without it (a lent GPU machine has torch and none of the search stack)
    from tlsearch.jobs.checkpoints import StorageCheckpoints

    return StorageCheckpoints(job.resume_uri, job.checkpoint_every)


def run_scratch(job: JobConfig, workdir: Path, checkpoints: Any = None) -> dict[str, Any]:
    """Train from scratch on the job's FT-style sample with ``train_run``."""
    ref = _data(job)
    cfg = training_run_config(job, ref, workdir)
    select = ft_selector(ref.size, ref.sampling, job.seed)
    return train_run(cfg, progress=False, select_pool=select, checkpoints=checkpoints)


def run_transfer(job: JobConfig, workdir: Path, checkpoints: Any = None) -> dict[str, Any]:
    """PT / FT / MPT through ``tlsearch.transfer.run``."""
    if job.kind == "mpt_pretrain":
        if not job.mpt_data:
            raise ValueError("an MPT job needs mpt_data")
        first = job.mpt_data[0].model_copy(update={"test": None, "target": None})
        cfg = training_run_config(job, first, workdir, split=False)
        specs = {ref.name: ref.data for ref in job.mpt_data}
        return transfer.mpt_pretrain_run(
            cfg, specs, exclude=job.excluded_target, progress=False, checkpoints=checkpoints
        )
    ref = _data(job)
    cfg = training_run_config(job, ref, workdir)
    if job.kind == "pretrain":
        return transfer.pretrain_run(cfg, size=ref.size, progress=False, checkpoints=checkpoints)
    if not job.pretrained or not job.strategy:
        raise ValueError("a finetune job needs 'pretrained' and 'strategy'")
    return transfer.finetune_run(
        cfg,
        job.pretrained,
        strategy=job.strategy,
        size=ref.size,
        sampling=ref.sampling,
        progress=False,
        checkpoints=checkpoints,
    )


def training_run_config(
    job: JobConfig, ref: DataRef, workdir: Path, split: bool = True
) -> RunConfig:
    """The core's ``RunConfig`` for ``job`` on ``ref`` (test split materialised if needed)."""
    data, test, target = ref.data, ref.test, ref.target
    if split and test is None and ref.test_fraction > 0:  # 0: no test set (a PT pool)
        data, test = split_test(ref, workdir / "data")
        target = None
    return RunConfig(
        data=data,
        test=test,
        allow_test_overlap=ref.allow_test_overlap,
        target=target,
        data_home=ref.data_home,
        out_dir=workdir,
        cache_dir=job.cache_dir,
        train={**job.train, "seed": job.seed},
        model=job.model,
        graphs=job.graphs,
    )


def split_test(ref: DataRef, folder: Path) -> tuple[str, str]:
    """Hold out ``ref.test_fraction`` of ``ref.data`` (fixed by ``ref.split_seed``).

    Writes ``pool.json`` (what training may draw from) and ``test.json`` (never trained on),
    with the target named ``target``; returns their paths. A held-out structure identical to
    a pool one (one structure under two ids) joins the pool, so the test set never repeats it.
    """
    records = load_data(ref.data, target=ref.target, data_home=ref.data_home).records
    records = [_canonical(r) for r in records]
    pool_idx, test_idx = train_val_split(len(records), ref.test_fraction, ref.split_seed)
    pool_idx, test_idx = drop_from_test(records, pool_idx, test_idx)
    pool = write_jarvis_json([records[i] for i in pool_idx], folder / "pool.json")
    test = write_jarvis_json([records[i] for i in test_idx], folder / "test.json")
    return str(pool), str(test)


def ft_selector(size: int | None, sampling: str, seed: int) -> Any:
    """A ``train_run`` pool selector: ``size`` structures by ``sampling`` (all when None).

    The same choice as ``tlsearch.transfer.run.ft_sample``, so a scratch baseline and a
    fine-tuned model of one seed train on the same structures.
    """

    def select(data: Any) -> np.ndarray:
        n = len(data.store)
        if size is None or size >= n:
            if size is not None and size > n:
                raise ValueError(f"asked for {size} training structures, the pool has {n}")
            return np.arange(n)
        return sample_indices(data.targets[:, 0], size, method=sampling, seed=seed)

    return select


def _data(job: JobConfig) -> DataRef:
    if job.data is None:
        raise ValueError(f"a {job.kind} job needs data")
    return job.data


def _canonical(record: Any) -> Any:
    """The record with its one target named ``target`` (what written files carry)."""
    if list(record.targets) == ["target"]:
        return record
    if len(record.targets) != 1:
        raise ValueError(
            f"record {record.id} has targets {sorted(record.targets)}; set the dataset's "
            "'target' to choose one"
        )
    return replace(record, targets={"target": next(iter(record.targets.values()))})
