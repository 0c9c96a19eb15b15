"""One training run from a :class:`RunConfig`: data -> graphs -> scaler -> split -> fit -> files.

Before training, a test structure identical to a training or validation one (same content
hash) stops the run unless ``cfg.allow_test_overlap`` (``metrics.json``: ``test_overlap``).
Outputs in ``cfg.out_dir`` (written in this order, so a failure late in the run loses nothing
already computed): ``config.yaml`` (resolved), ``history.csv``, ``model.pt``,
``predictions_val.csv``, ``metrics.json`` (validation), ``rejected.csv``, then
``predictions_test.csv`` and ``metrics.json`` again with the test metrics.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

import tlsearch
from tlsearch.model.alignn import ALIGNN, set_kernel
from tlsearch.structures.overlap import check_test_overlap
from tlsearch.structures.records import LoadResult
from tlsearch.training.checkpoint import save_model
from tlsearch.training.config import RunConfig
from tlsearch.training.data import (
    InputStoreFactory,
    PreparedData,
    prepare_data,
    prepare_run_data,
    rejection_rows,
    resolve_target_names,
    target_matrix,
)
from tlsearch.training.distributed import Distributed, ShardedTrainBatches
from tlsearch.training.loop import (
    BatchSource,
    FitResult,
    GraphLoader,
    fit,
    predict_batches,
    seed_everything,
    select_device,
)
from tlsearch.training.metrics import target_metrics
from tlsearch.training.outputs import (
    prediction_columns,
    write_history_csv,
    write_json,
    write_predictions_csv,
    write_rejected_csv,
)
from tlsearch.training.resume import EpochCheckpoints
from tlsearch.training.scaler import Mode, TargetScaler
from tlsearch.training.splits import train_val_split

logger = logging.getLogger(__name__)

MAX_REJECTED_IN_METRICS = 100


ModelFactory = Callable[[RunConfig, list[str]], torch.nn.Module]
PoolSelector = Callable[["PreparedData"], np.ndarray]


class TrainingForm(Protocol):
    """The module and batch form that :func:`fit` trains and evaluation predicts with.

    The default, :class:`GraphForm`, is the model itself on graph batches. Another form (e.g.
    :class:`tlsearch.transfer.frozen_trunk.FrozenTrunkForm`: the head on cached trunk
    features) must give the same predictions and share the model's parameters, so the model
    that is saved is the one that trained.

    Attributes:
        module: what ``fit`` trains and ``predict_batches`` runs.
        info: recorded in ``metrics.json`` under ``frozen_trunk`` when not empty.
    """

    module: torch.nn.Module
    info: dict[str, Any]

    def loader(
        self,
        data: PreparedData,
        indices: np.ndarray,
        targets: np.ndarray | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> BatchSource: ...


FormFactory = Callable[[torch.nn.Module, RunConfig, torch.device], TrainingForm]


class GraphForm:
    """The model trained and evaluated on graph batches (:class:`GraphLoader`)."""

    def __init__(self, model: torch.nn.Module, info: dict[str, Any] | None = None) -> None:
        self.module = model
        self.info = dict(info or {})

    def loader(
        self,
        data: PreparedData,
        indices: np.ndarray,
        targets: np.ndarray | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> GraphLoader:
        return GraphLoader(data.store, indices, targets, batch_size, shuffle=shuffle, seed=seed)


def graph_form(model: torch.nn.Module, cfg: RunConfig, device: torch.device) -> GraphForm:
    """The default :data:`FormFactory`: the model on graph batches."""
    return GraphForm(model)


def train_run(
    cfg: RunConfig,
    *,
    progress: bool = True,
    model_factory: ModelFactory | None = None,
    select_pool: PoolSelector | None = None,
    provenance: dict[str, Any] | None = None,
    train_records: LoadResult | None = None,
    training_form: FormFactory | None = None,
    distributed: Distributed | None = None,
    checkpoints: EpochCheckpoints | None = None,
    input_store: InputStoreFactory | None = None,
) -> dict[str, Any]:
    """Train, validate and (if ``cfg.test``) test one model; returns the ``metrics.json`` dict.

    The same path serves scratch, pre-training, fine-tuning and multi-property pre-training:

    Args:
        cfg: the run.
        progress: progress bars.
        model_factory: builds the model to train from the resolved config and the target names
            (default: a fresh ALIGNN); parameters it leaves with ``requires_grad=False`` stay
            frozen. Models with a ``describe()`` method are saved with it, so they reload.
        select_pool: picks the structures (indices into the training store) that form the
            training set before its train/validation split (a PT subset, an FT sample). The
            target scaler is fitted before it, on the whole training data (:func:`pool_scaler`).
        provenance: recorded in ``model.pt`` and ``metrics.json`` (PT source, strategy...).
        train_records: training records already in memory (``cfg.data`` then only names them).
        training_form: wraps the built model into what :func:`fit` trains and evaluation
            predicts with (default :func:`graph_form`: the model on graph batches); the model
            itself is saved.
        distributed: run as one rank of a DDP job (every rank calls ``train_run`` with the
            same ``cfg``, each with its own ``out_dir``): the same data, scaler, sample and
            split on every rank, :func:`fit` trains across them
            (:mod:`tlsearch.training.distributed`), and only rank 0 evaluates and writes the
            outputs; the other ranks return ``{"rank": r, "epochs_run": n}`` after training.
        checkpoints: mid-training checkpoints to save and resume from
            (:mod:`tlsearch.training.resume`); ``metrics.json``'s ``resumed_from_epoch`` says
            whether this run resumed.
        input_store: the model family's inputs (:func:`~tlsearch.training.data.prepare_data`;
            default: ALIGNN graphs), for a model of another backbone family.
    """
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    device = distributed.device if distributed else select_device(cfg.train.device)

    train_data = prepare_run_data(
        cfg, cfg.data, names=None, role="training", progress=progress, loaded=train_records,
        input_store=input_store,
    )  # fmt: skip
    names = train_data.target_names
    # Load and graph the test set before training: a bad test spec fails in seconds, not hours.
    test_data = (
        prepare_run_data(
            cfg, cfg.test, names=names, role="test", progress=progress, input_store=input_store
        )
        if cfg.test
        else None
    )
    # one scaler per dataset: fitted before the PT subset / FT sample / validation split is drawn
    scaler = pool_scaler(train_data, cfg.train.target_normalisation)
    pool = np.arange(len(train_data.store)) if select_pool is None else select_pool(train_data)
    train_idx, val_idx = (
        pool[part] for part in train_val_split(len(pool), cfg.train.val_fraction, cfg.train.seed)
    )
    overlap = count_test_overlap(cfg, train_data, np.concatenate([train_idx, val_idx]), test_data)
    resolved = resolve_config(cfg, n_structures=len(pool), num_targets=len(names))
    (out / "config.yaml").write_text(
        start_comment(provenance) + resolved.to_yaml(), encoding="utf-8"
    )
    logger.info(
        "training on %d, validating on %d structures (batch %d, device %s, targets %s)",
        len(train_idx), len(val_idx), resolved.train.batch_size, device, names,
    )  # fmt: skip

    model, result, form = train_model(
        resolved, train_data, scaler, train_idx, val_idx, device, progress, model_factory,
        training_form, distributed, checkpoints,
    )  # fmt: skip
    if distributed is not None and not distributed.is_main:
        return {"rank": distributed.rank, "epochs_run": result.epochs_run}
    write_history_csv(out / "history.csv", result.history)
    save_model(
        out / "model.pt",
        model,
        resolved.model,
        scaler,
        resolved.graphs,
        resolved.train,
        names,
        extra={"data": cfg.data, "best_epoch": result.best_epoch, **(provenance or {})},
    )
    metrics = base_metrics(resolved, result, train_data, test_data, scaler, device)
    metrics["test_overlap"] = overlap
    if provenance:
        metrics["provenance"] = provenance
    if form.info:
        metrics["frozen_trunk"] = form.info  # updated in place by the test loader below
    metrics["n_train"], metrics["n_val"] = len(train_idx), len(val_idx)
    metrics["ddp_workers"] = distributed.world if distributed is not None else 1
    metrics["resumed_from_epoch"] = result.resumed_from_epoch
    metrics["precision"] = result.precision  # what training ran in (fp32 on a CPU)
    metrics["weights"] = resolved.train.weights  # best (epoch best_epoch) or last (epochs_run)
    val_loader = form.loader(
        train_data, val_idx, scaler.transform(train_data.targets), resolved.train.batch_size
    )
    metrics["val"] = evaluate_and_write(
        form.module, val_loader, scaler, names, device, out / "predictions_val.csv"
    )
    write_rejected_csv(out / "rejected.csv", train_data, test_data)
    write_json(out / "metrics.json", metrics)
    if test_data is not None:
        try:
            test_loader = form.loader(
                test_data,
                np.arange(len(test_data.store)),
                scaler.transform(test_data.targets),
                resolved.train.batch_size,
            )
            metrics["test"] = evaluate_and_write(
                form.module, test_loader, scaler, names, device, out / "predictions_test.csv"
            )
            metrics["test_last_epoch"] = score_final_weights(
                form.module, result, test_loader, scaler, names, device, out
            )
        except Exception as exc:
            metrics["test_error"] = f"{type(exc).__name__}: {exc}"
            write_json(out / "metrics.json", metrics)
            raise
        write_json(out / "metrics.json", metrics)
    log_summary(metrics)
    return metrics


def score_final_weights(
    module: torch.nn.Module,
    result: FitResult,
    test_loader: BatchSource,
    scaler: TargetScaler,
    names: list[str],
    device: torch.device,
    out: Path,
) -> dict[str, Any] | None:
    """Test metrics of the final epoch's weights when the run kept the best epoch's.

    The paper's test predictions came from the final epoch's weights (alignn's in-memory
    ``best_model = net`` is a reference to the trained model), so a run that keeps the best
    epoch's (``train.weights: best``) also scores the last ones, into
    ``predictions_test_last_epoch.csv``; ``module`` holds the best weights again afterwards.
    None when the kept weights are the final epoch's (``weights: last``, or the best epoch was
    the last one): the headline ``test`` metrics are then the last epoch's.
    """
    if result.final_state is None:
        return None
    kept = copy.deepcopy(module.state_dict())
    module.load_state_dict(result.final_state)
    try:
        return evaluate_and_write(
            module, test_loader, scaler, names, device, out / "predictions_test_last_epoch.csv"
        )
    finally:
        module.load_state_dict(kept)


def pool_scaler(data: PreparedData, mode: Mode) -> TargetScaler:
    """The dataset's target scaler, fitted on its whole training pool.

    The pool is every loaded training record (``cfg.data``: a dataset's ``pool.json`` when the
    search held its test part out, else the training file), graph rejections included, before
    any PT subset, FT sample or validation split is drawn. So every seed, FT size, sampling
    method and job kind on one dataset shares one scaler, and normalised metrics of those runs
    are in the same units (the paper normalised once per dataset, Sec. 2.3).
    """
    records = data.loaded.records
    targets = np.full((len(records), len(data.target_names)), np.nan)
    for i, record in enumerate(records):
        for j, name in enumerate(data.target_names):
            value = record.targets.get(name)
            if value is not None:
                targets[i, j] = value
    return TargetScaler.fit(targets, mode)


def count_test_overlap(
    cfg: RunConfig, train_data: PreparedData, indices: np.ndarray, test_data: PreparedData | None
) -> int | None:
    """Test structures identical to a trained-on one (store ``indices``: train + validation).

    Raises:
        ValueError: when there are some and ``cfg.allow_test_overlap`` is off (names the pairs).
    """
    if test_data is None:
        return None
    records, positions = train_data.loaded.records, train_data.store.positions
    train = [records[positions[i]] for i in indices]
    test = [test_data.loaded.records[p] for p in test_data.store.positions]
    what = f"test data {cfg.test} vs training data {cfg.data}"
    return check_test_overlap(train, test, cfg.allow_test_overlap, what).count


def resolve_config(cfg: RunConfig, n_structures: int, num_targets: int) -> RunConfig:
    """The config with the batch size and the model's output count filled in.

    ``n_structures`` is the training set before its train/validation split (the pool): the
    paper's batch-size rule counts it (:meth:`TrainConfig.resolve_batch_size`).

    Raises:
        ValueError: when ``model.output_features`` was set explicitly to another number.
    """
    if "output_features" in cfg.model.model_fields_set and cfg.model.output_features != num_targets:
        raise ValueError(
            f"model.output_features is {cfg.model.output_features} but the data has "
            f"{num_targets} target(s)"
        )
    train = cfg.train.model_copy(update={"batch_size": cfg.train.resolve_batch_size(n_structures)})
    model = cfg.model.model_copy(update={"output_features": num_targets})
    return cfg.model_copy(update={"train": train, "model": model})


def start_comment(provenance: dict[str, Any] | None) -> str:
    """A ``config.yaml`` header naming a foundation model's backbone and checkpoint (a YAML
    comment: the file still loads as the run's config); empty for any other run."""
    if not provenance or "backbone" not in provenance:
        return ""
    return (
        f"# start: {provenance['checkpoint']} (backbone {provenance['backbone']}, package "
        f"{provenance.get('checkpoint_version')}, weights sha256 "
        f"{provenance.get('checkpoint_sha256')})\n"
    )


def train_model(
    cfg: RunConfig,
    data: PreparedData,
    scaler: TargetScaler,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    device: torch.device,
    progress: bool,
    model_factory: ModelFactory | None = None,
    training_form: FormFactory | None = None,
    distributed: Distributed | None = None,
    checkpoints: EpochCheckpoints | None = None,
) -> tuple[torch.nn.Module, FitResult, TrainingForm]:
    """Seed, build the model (default: a fresh ALIGNN), put it in its training form (default:
    graphs) and fit it; returns the model with its best weights, the result and the form.

    ``result.train_seconds`` includes building the form's loaders (e.g. computing cached
    trunk features). With ``distributed``, the form's module trains wrapped in DDP on this
    rank's slices of the batches and shard of the validation set; the form and the model
    returned are unwrapped.
    """
    seed_everything(cfg.train.seed)
    model = ALIGNN(cfg.model) if model_factory is None else model_factory(cfg, data.target_names)
    set_kernel(model, cfg.model.kernel)  # a factory's model (e.g. read from a file) too
    start = time.perf_counter()
    form = (training_form or graph_form)(model, cfg, device)
    targets = scaler.transform(data.targets)
    batch_size = cfg.train.resolve_batch_size(len(train_idx) + len(val_idx))  # the pool
    train = form.loader(data, train_idx, targets, batch_size, shuffle=True, seed=cfg.train.seed)
    module = form.module
    if distributed is not None:
        train = ShardedTrainBatches(train, distributed)
        val_idx = distributed.shard(val_idx)
        module = distributed.wrap(module)
    val = form.loader(data, val_idx, targets, batch_size)
    prepare_seconds = time.perf_counter() - start
    result = fit(
        module, train, val, cfg.train, device=device, progress=progress,
        distributed=distributed, checkpoints=checkpoints,
    )  # fmt: skip
    result.train_seconds += prepare_seconds
    logger.info(
        "trained %d epochs in %.1f s (best epoch %s, val MAE %.5g normalised%s%s)",
        result.epochs_run, result.train_seconds, result.best_epoch, result.best_val_mae,
        ", early stopped" if result.early_stopped else "",
        ", DIVERGED" if result.diverged else "",
    )  # fmt: skip
    return model, result, form


def evaluate_and_write(
    model: torch.nn.Module,
    loader: BatchSource,
    scaler: TargetScaler,
    names: list[str],
    device: torch.device,
    csv_path: Path,
) -> dict[str, Any]:
    """Predict ``loader``, write ``id,target,prediction`` (physical units), return metrics.

    Metrics are in physical units, plus ``normalised`` ones when the scaler is not the identity.
    """
    ids, pred_norm, true_norm = predict_batches(model, loader, device)
    if true_norm is None:
        raise ValueError("evaluation needs targets")
    pred = scaler.inverse_transform(pred_norm)
    true = scaler.inverse_transform(true_norm)
    write_predictions_csv(csv_path, ids, names, pred, true)
    metrics = target_metrics(true, pred, names)
    if scaler.mode != "none":
        metrics["normalised"] = target_metrics(true_norm, pred_norm, names)
    return metrics


def base_metrics(
    cfg: RunConfig,
    result: FitResult,
    train_data: PreparedData,
    test_data: PreparedData | None,
    scaler: TargetScaler,
    device: torch.device,
) -> dict[str, Any]:
    """Everything in ``metrics.json`` except the val/test metrics themselves."""
    parts = {"train": train_data} | ({"test": test_data} if test_data is not None else {})
    rejected = {role: rejection_rows(d) for role, d in parts.items()}
    return {
        "tlsearch_version": tlsearch.__version__,
        "data": cfg.data,
        "test_data": cfg.test,
        "target_names": train_data.target_names,
        "target_normalisation": scaler.mode,
        "scaler": scaler.to_dict(),
        "scaler_id": scaler.fingerprint(),
        "val": None,
        "test": None,
        "best_epoch": result.best_epoch,
        "best_val_mae_normalised": result.best_val_mae,
        "early_stopping_monitor": result.monitor,  # what chose best_epoch: val_mae or val_loss
        "best_val_loss_normalised": result.best_val_loss,
        "loss": cfg.train.loss,
        "mpt_loss_denominator": (
            cfg.train.mpt_loss_denominator if cfg.train.loss == "masked_l1" else None
        ),
        "epochs_run": result.epochs_run,
        "early_stopped": result.early_stopped,
        # patience counted only after this epoch (the one-cycle warm-up; 0: from epoch 1)
        "early_stopping_after_epoch": cfg.train.patience_start_epoch(),
        "diverged": result.diverged,
        "train_seconds": result.train_seconds,
        "train_structures_per_second": result.train_structures_per_second,
        "batch_size": cfg.train.batch_size,
        "device": str(device),
        "n_test": len(test_data.store) if test_data is not None else 0,
        "n_rejected": {role: len(rows) for role, rows in rejected.items()},
        "rejected_reasons": {
            role: dict(Counter(row["reason"] for row in rows)) for role, rows in rejected.items()
        },
        "rejected": {role: rows[:MAX_REJECTED_IN_METRICS] for role, rows in rejected.items()},
        "graph_cache_hit": {role: bool(d.store.cache_hit) for role, d in parts.items()},
    }


def log_summary(metrics: dict[str, Any]) -> None:
    """One log line per evaluated part."""
    for part in ("val", "test"):
        m = metrics.get(part)
        if m:
            logger.info(
                "%s: R2 %s MAE %s RMSE %s (n=%d)",
                part, _fmt(m["r2"]), _fmt(m["mae"]), _fmt(m["rmse"]), m["n"],
            )  # fmt: skip


def _fmt(x: float | None) -> str:
    return "nan" if x is None or x != x else f"{x:.4g}"


__all__ = [  # the run, and the data and file helpers it uses (kept importable from here)
    "PreparedData", "pool_scaler", "prepare_data", "prepare_run_data", "prediction_columns",
    "rejection_rows", "resolve_target_names", "target_matrix", "train_run", "write_history_csv",
    "write_json", "write_predictions_csv", "write_rejected_csv",
]  # fmt: skip
