"""Multi-worker pre-training: a Ray Train (V2) ``TorchTrainer`` started from the PT job's trial.

Each worker builds the same graph store (the shared, locked graph cache builds it once), takes
every ``world``-th structure of the training part, and trains one ALIGNN wrapped in DDP (gloo on
CPU, NCCL on GPU) with the shared loss, AdamW and one-cycle schedule. Rank 0 then evaluates on
the validation and test sets and returns the metrics and the bytes of ``model.pt`` (so the model
reaches the trial even when rank 0 ran on another node). No early stopping: every epoch runs.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from tlsearch.search.jobs import JobConfig, training_run_config

logger = logging.getLogger(__name__)


def run_ddp_pretrain(job: JobConfig, workdir: Path) -> dict[str, Any]:
    """Run PT ``job`` on ``job.num_workers`` DDP workers; write ``model.pt`` into ``workdir``."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if job.data is None:
        raise ValueError("a pretrain job needs data")
    require_return_value()
    run = training_run_config(job, job.data, workdir)
    per_worker = {"CPU": job.cpus_per_worker}
    if job.gpus_per_worker:
        per_worker["GPU"] = job.gpus_per_worker
    trainer = TorchTrainer(
        ddp_train_loop,
        train_loop_config={"run": run.model_dump(mode="json"), "size": job.data.size},
        scaling_config=ScalingConfig(
            num_workers=job.num_workers,
            use_gpu=job.gpus_per_worker > 0,
            resources_per_worker=per_worker,
        ),
        run_config=RunConfig(name=f"ddp-{workdir.name}", storage_path=str(workdir / "ray_train")),
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
    (workdir / "model.pt").write_bytes(output["model"])
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
    from tlsearch.search.rows import DETERMINISTIC_ERRORS

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
    """The per-worker function (rank 0 returns ``{"metrics", "model"}``, the others None)."""
    import numpy as np
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import get_device, prepare_model

    from tlsearch.model.alignn import ALIGNN
    from tlsearch.training.config import RunConfig
    from tlsearch.training.loop import GraphLoader, masked_loss, seed_everything
    from tlsearch.training.optim import build_optimizer, build_scheduler
    from tlsearch.training.run import pool_scaler, prepare_run_data
    from tlsearch.training.splits import train_val_split

    run = RunConfig.model_validate(config["run"])
    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    torch.set_num_threads(run.train.num_threads or 1)
    data = prepare_run_data(run, run.data, names=None, role="training", progress=False)
    scaler = pool_scaler(data, run.train.target_normalisation)  # the dataset's, as train_run's
    seed = run.train.seed
    pool = np.arange(len(data.store))
    if config["size"] is not None and config["size"] < pool.size:
        pool = np.sort(np.random.default_rng(seed).choice(pool.size, config["size"], replace=False))
    train_idx, val_idx = (pool[p] for p in train_val_split(pool.size, run.train.val_fraction, seed))
    targets = scaler.transform(data.targets)
    batch_size = run.train.resolve_batch_size(pool.size)  # before the split, as train_run
    usable = len(train_idx) // world * world  # equal shards: every rank takes the same steps
    shard = train_idx[:usable][rank::world]
    model_cfg = run.model.model_copy(update={"output_features": len(data.target_names)})
    seed_everything(seed)
    model = prepare_model(ALIGNN(model_cfg))
    device = get_device()
    loader = GraphLoader(data.store, shard, targets, batch_size, shuffle=True, seed=seed + rank)
    train_cfg = run.train.model_copy(update={"batch_size": batch_size})
    optimizer = build_optimizer(model.named_parameters(), train_cfg)
    scheduler = build_scheduler(optimizer, train_cfg, steps_per_epoch=max(len(loader), 1))
    start, structures, diverged, epoch = time.perf_counter(), 0, False, 0
    for epoch in range(1, train_cfg.epochs + 1):
        model.train()
        bad = torch.zeros(1, device=device)  # NCCL reduces tensors on the rank's GPU only
        for batch in loader.batches(epoch):
            batch = batch.to(device)
            loss = masked_loss(model(batch), batch.targets, batch.target_mask, train_cfg.loss)
            if not math.isfinite(float(loss.detach())):
                bad += 1
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            structures += batch.num_graphs
        dist.all_reduce(bad)
        if bad.item() > 0:
            diverged = True
            break
    seconds = time.perf_counter() - start
    if rank != 0:
        return None
    inner = model.module if hasattr(model, "module") else model
    metrics = {
        "epochs_run": epoch,
        "best_epoch": epoch,
        "early_stopped": False,
        "diverged": diverged,
        "train_seconds": seconds,
        "train_structures_per_second": structures * world / seconds,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "batch_size": batch_size,
        "device": str(device),
        "ddp_workers": world,
        "target_normalisation": scaler.mode,
        "scaler": scaler.to_dict(),
        "scaler_id": scaler.fingerprint(),
    }
    metrics.update(_evaluate(run, inner, data, scaler, val_idx, batch_size, device))
    with tempfile.TemporaryDirectory() as tmp:
        path = _save(Path(tmp) / "model.pt", inner, model_cfg, scaler, run, data.target_names)
        model_bytes = path.read_bytes()
    return {"metrics": metrics, "model": model_bytes}


def _evaluate(
    run: Any, model: Any, data: Any, scaler: Any, val_idx: Any, batch_size: int, device: Any
) -> dict[str, Any]:
    """Validation and (when the run has one) test metrics, as ``train_run`` reports them."""
    import numpy as np

    from tlsearch.training.loop import GraphLoader
    from tlsearch.training.run import evaluate_and_write, prepare_run_data

    names = data.target_names
    out_dir = Path(tempfile.mkdtemp())
    val = GraphLoader(data.store, val_idx, scaler.transform(data.targets), batch_size)
    metrics = {"val": evaluate_and_write(model, val, scaler, names, device, out_dir / "val.csv")}
    if run.test:
        test = prepare_run_data(run, run.test, names=names, role="test", progress=False)
        loader = GraphLoader(
            test.store, np.arange(len(test.store)), scaler.transform(test.targets), batch_size
        )
        metrics["test"] = evaluate_and_write(
            model, loader, scaler, names, device, out_dir / "test.csv"
        )
        metrics["n_test"] = len(test.store)
    return metrics


def _save(path: Path, model: Any, model_cfg: Any, scaler: Any, run: Any, names: list) -> Path:
    from tlsearch.training.checkpoint import save_model

    return save_model(
        path,
        model,
        model_cfg,
        scaler,
        run.graphs,
        run.train,
        list(names),
        extra={"data": run.data, "kind": "pretrain", "ddp": True},
    )
