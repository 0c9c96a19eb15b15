"""Multi-worker pre-training: a Ray Train (V2) ``TorchTrainer`` started from the PT job's trial.

Every worker runs the same PT run as a one-process PT job
(:func:`tlsearch.transfer.run.pretrain_run`, the one training loop): the same data, scaler,
PT subset, split and batch size, and :func:`tlsearch.training.loop.fit` made distributed
(:mod:`tlsearch.training.distributed`: DDP over gloo on CPU, NCCL on GPU; each global batch of
the configured size split across the ranks, reshuffled every epoch; validation on all ranks'
shards each epoch; early stopping and best weights as in one process). Rank 0 then evaluates
on the validation and test sets and returns what its run wrote (``model.pt``, ``metrics.json``,
``history.csv``, predictions), so the outputs reach the trial even when rank 0 ran on another
node.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from tlsearch.jobs.checkpoints import STATE_FILE, StorageCheckpoints
from tlsearch.jobs.config import JobConfig
from tlsearch.jobs.errors import DETERMINISTIC_ERRORS
from tlsearch.jobs.identity import pretrain_key
from tlsearch.storage.uri import resolve

logger = logging.getLogger(__name__)


def run_ddp_pretrain(job: JobConfig, workdir: Path) -> dict[str, Any]:
    """Run PT ``job`` on ``job.num_workers`` DDP workers; write its outputs into ``workdir``.

    With ``job.checkpoint_every``, the ranks checkpoint through Ray Train every that many
    epochs into the run ``ddp-<PT key>`` under ``job.resume_uri`` (the search's storage): the
    trainer restarts dead workers from the latest checkpoint (``FailureConfig(max_failures)``)
    and a retried trial finds it there. The run's folder is removed once the job succeeded.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if job.data is None:
        raise ValueError("a pretrain job needs data")
    require_return_value()
    workdir.mkdir(parents=True, exist_ok=True)
    per_worker = {"CPU": job.cpus_per_worker}
    if job.gpus_per_worker:
        per_worker["GPU"] = job.gpus_per_worker
    name = f"ddp-{pretrain_key(job)}"
    fs, storage = resolve(job.resume_uri or str(workdir / "ray_train"))
    every = job.checkpoint_every if job.resume_uri else None
    trainer = TorchTrainer(
        ddp_train_loop,
        train_loop_config={
            "job": job.model_dump(mode="json"),  # each worker holds its test part out itself
            "size": job.data.size,
            "checkpoint_every": every,
        },  # fmt: skip
        scaling_config=ScalingConfig(
            num_workers=job.num_workers,
            use_gpu=job.gpus_per_worker > 0,
            resources_per_worker=per_worker,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            storage_filesystem=fs,
            failure_config=FailureConfig(max_failures=job.max_failures),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        cause = deterministic_cause(exc)
        if cause is None:
            raise
        raise cause from exc
    if result.error is not None:
        raise deterministic_cause(result.error) or result.error
    output = result.return_value
    for file, content in output["files"].items():  # rank 0's outputs, model.pt among them
        (workdir / file).write_bytes(content)
    if job.resume_uri:  # finished: its checkpoints are not needed
        StorageCheckpoints(job.resume_uri, 1).clear()
    return output["metrics"]


def require_return_value() -> None:
    """Refuse, before any training, a Ray whose Train ``Result`` has no ``return_value``.

    Rank 0 hands the model back as its return value; on an older Ray every DDP PT job would
    train to the end, fail with ``AttributeError`` and be retried. ``NotImplementedError`` is
    deterministic: the job is recorded as failed once, naming the fix.
    """
    import ray
    from ray.train import Result

    if not hasattr(Result, "return_value"):
        raise NotImplementedError(
            f"DDP PT jobs (num_workers > 1) need a Ray whose Train Result has return_value; "
            f"this node runs ray {ray.__version__}: install the version pyproject.toml pins "
            "(pip install -e '.[search]'; cluster/Dockerfile and the cluster configs pin the same)"
        )


def deterministic_cause(exc: BaseException) -> ValueError | None:
    """A ``ValueError`` naming the first worker's deterministic failure (bad data, bad config).

    Ray Train wraps worker exceptions (``WorkerGroupError.worker_failures``, ``RayTaskError``
    causes); without unwrapping, a bad-data PT job on DDP workers would look transient and be
    retried by Tune instead of being recorded as ``failed``. None when no worker failed
    deterministically (the error is then re-raised as it is, and retried).
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, DETERMINISTIC_ERRORS) and err is not exc:
            return ValueError(f"DDP worker failed: {type(err).__name__}: {err}")
        failures = getattr(err, "worker_failures", None) or {}
        todo += [failures[rank] for rank in sorted(failures)]
        for attr in ("cause", "controller_failure", "__cause__"):
            inner = getattr(err, attr, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
    return None


def ddp_train_loop(config: dict[str, Any]) -> dict[str, Any] | None:
    """The per-worker function: this rank's part of :func:`tlsearch.transfer.run.pretrain_run`.

    Every rank runs the same PT run (the one training loop, made distributed by
    :mod:`tlsearch.training.distributed`) into its own temporary folder. ``config["job"]``: the
    PT job, whose test part each worker holds out into that folder itself (the split is fixed
    by ``split_seed``, so every rank gets the same pool; a ``pool.json`` staged in the trial's
    folder could not be read by a worker on another node); ``config["run"]`` instead: a
    ``RunConfig`` whose files every worker can read. Rank 0 returns
    ``{"metrics", "files"}``, every file that run wrote (``model.pt``, ``metrics.json``,
    ``history.csv``, predictions), so they reach the trial even when rank 0 ran on another
    node. The other ranks return None.
    """
    import ray.train
    from ray.train.torch import get_device

    # torch comes with these: only Ray Train's workers need them, not the driver
    from tlsearch.jobs.run import training_run_config
    from tlsearch.training.config import RunConfig
    from tlsearch.training.distributed import Distributed
    from tlsearch.transfer.run import pretrain_run

    context = ray.train.get_context()
    place = Distributed(context.get_world_rank(), context.get_world_size(), get_device())
    every = config.get("checkpoint_every")
    checkpoints = RayTrainCheckpoints(every, place.rank) if every else None
    with tempfile.TemporaryDirectory(prefix=f"tlsearch-ddp-rank{place.rank}-") as tmp:
        if "job" in config:
            job = JobConfig.model_validate(config["job"])
            run = training_run_config(job, job.data, Path(tmp))  # data/ split inside tmp
        else:
            run = RunConfig.model_validate(config["run"])
        run = run.model_copy(update={"out_dir": Path(tmp)})
        metrics = pretrain_run(
            run, size=config["size"], progress=False, distributed=place, checkpoints=checkpoints
        )
        if not place.is_main:
            return None
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
    return {"metrics": metrics, "files": files}


class RayTrainCheckpoints:
    """Ray Train's checkpoints of a DDP job: rank 0 attaches the state, every rank reports."""

    def __init__(self, every: int, rank: int) -> None:
        self.every = every
        self.rank = rank

    def load(self) -> dict[str, Any] | None:
        import ray.train

        from tlsearch.training.resume import state_from_bytes

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return state_from_bytes((Path(folder) / STATE_FILE).read_bytes())

    def save(self, state: dict[str, Any]) -> None:
        import ray.train
        from ray.train import Checkpoint

        from tlsearch.training.resume import state_to_bytes

        metrics = {"epoch": int(state["epoch"])}
        if self.rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory(prefix="tlsearch-ckpt-") as tmp:
            (Path(tmp) / STATE_FILE).write_bytes(state_to_bytes(state))
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
