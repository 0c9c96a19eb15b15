"""The training loop: seeding, loss, one epoch, early stopping, ``fit``.

Each concern is one function or class; :func:`fit` only composes them. Batches come from
:mod:`tlsearch.training.batches`, predictions and validation scores from
:mod:`tlsearch.training.evaluate` (both importable from here too). Targets handed to the
loaders are already normalised (see :mod:`tlsearch.training.scaler`); everything here works in
those units.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tlsearch.graphs.batch import GraphBatch
from tlsearch.training.batches import (
    BatchSource,
    Collatable,
    GraphLoader,
    batch_chunks,
    num_batches,
)
from tlsearch.training.config import TrainConfig
from tlsearch.training.ema import WeightAverage
from tlsearch.training.evaluate import (
    monitored_metric,
    predict_batches,
    validate,
    validation_scores,
)
from tlsearch.training.heap import retained_heap
from tlsearch.training.losses import MPTLossDenominator, masked_l1
from tlsearch.training.oom import TrainingOutOfMemoryError, out_of_memory_named
from tlsearch.training.optim import (
    NamedParameters,
    build_optimizer,
    build_scheduler,
    layer_depth,
)
from tlsearch.training.precision import effective_precision, matmul_precision, training_autocast
from tlsearch.training.resume import EpochCheckpoints, recipe_fingerprint, usable_state

if TYPE_CHECKING:
    from tlsearch.training.distributed import Distributed

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return torch.device(name)


def masked_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: str = "mse",
    denominator: MPTLossDenominator = "n_properties",
) -> torch.Tensor:
    """Mean squared (``mse``) or absolute (``l1``) error over the known entries.

    ``mask`` (same shape, bool) marks known targets; ``None`` means all are known. With no known
    entry the loss is 0 (and carries no gradient signal). ``masked_l1`` is the MPT loss of the
    paper's Eq. 1 (per structure, summed over its known properties and divided by
    ``denominator``, then averaged over structures): see
    :func:`tlsearch.training.losses.masked_l1` (``denominator`` is used by it only).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target {tuple(target.shape)}")
    if kind == "masked_l1":
        known = mask if mask is not None else torch.isfinite(target)
        return masked_l1(pred, target, known, denominator)
    diff = pred - target
    if kind == "mse":
        err = diff**2
    elif kind == "l1":
        err = diff.abs()
    else:
        raise ValueError(f"unknown loss {kind!r} (use mse, l1 or masked_l1)")
    if mask is None:
        return err.mean()
    weights = mask.to(err.dtype)
    return (err * weights).sum() / weights.sum().clamp(min=1.0)


@dataclass
class EpochStats:
    """One training epoch: mean loss over known targets, structures seen, seconds, divergence."""

    loss: float
    structures: int
    seconds: float
    diverged: bool = False


BATCHNORM_ONE_VALUE = "Expected more than 1 value per channel when training"


def forward_training(model: nn.Module, batch: GraphBatch) -> torch.Tensor:
    """``model(batch)`` in training mode; a BatchNorm fed one row raises a clear ``ValueError``.

    That happens only where :func:`batch_chunks` cannot merge: a training part of one
    structure, or ``batch_size == 1``, with a BatchNorm over graphs (``new_head*``, MPT) or a
    1-atom cell (ALIGNN's BatchNorm over atoms). Such a batch is refused rather than silently
    trained with running statistics (another recipe); with batch statistics its BatchNorm
    output would be constant anyway.
    """
    try:
        return model(batch)
    except ValueError as exc:
        if BATCHNORM_ONE_VALUE not in str(exc):
            raise
        shown = ", ".join(batch.ids[:5]) + (", ..." if len(batch.ids) > 5 else "")
        raise ValueError(
            f"a training batch of {batch.num_graphs} structure(s) with {batch.num_nodes} atom(s) "
            f"({shown}) cannot pass the model's BatchNorm in training mode ({exc}): training "
            "batches need 2 or more structures, so use batch_size >= 2 and a training part of "
            "at least 2 structures (3 or more before the validation split)"
        ) from exc


def train_one_epoch(
    model: nn.Module,
    loader: BatchSource,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loss_kind: str,
    device: torch.device,
    epoch: int,
    denominator: MPTLossDenominator = "n_properties",
    distributed: Distributed | None = None,
    precision: str = "fp32",
    defer_loss: bool | None = None,
    ema: WeightAverage | None = None,
) -> EpochStats:
    """One pass over ``loader`` (scheduler stepped every batch); stops at a non-finite loss.

    On CUDA the batch goes from pinned memory without blocking, the step runs under
    ``precision``'s autocast, and the loss stays on the device until the epoch ends (a
    non-finite one then marks the epoch diverged); on a CPU each batch loss is checked at once.
    ``defer_loss`` chooses between the two loss paths (default: deferred on CUDA). ``ema``:
    updated after every optimiser step.

    The epoch loss averages the batch losses weighted by what each averages over: known
    entries (``mse``/``l1``) or structures with a known property (``masked_l1``). With
    ``distributed``, a rank whose loss turns non-finite finishes the epoch (its peers wait in
    the same gradient collectives), and the loss, structures and divergence are summed over
    the ranks at the end, so every rank returns the same statistics.
    """
    model.train()
    start = time.perf_counter()
    total, weight, structures, bad = 0.0, 0.0, 0, False
    cuda = device.type == "cuda"
    defer = cuda if defer_loss is None else defer_loss
    on_device = torch.zeros((), dtype=torch.float64, device=device)  # summed there, no sync
    with out_of_memory_named(loader, device, "training"):  # an OOM is no divergence
        for host in loader.batches(epoch):
            if host.targets is None:
                raise ValueError("training batches need targets")
            known = _batch_weight(host, loss_kind)  # from the host copy: no device sync
            batch = host.pin_memory().to(device, non_blocking=True) if cuda else host.to(device)
            with training_autocast(precision, device):
                pred = forward_training(model, batch)
                loss = masked_loss(
                    pred.float(), batch.targets, batch.target_mask, loss_kind, denominator
                )
            if defer:  # the loss is read once per epoch: no host sync per step
                on_device += loss.detach().double() * known
            else:
                value = float(loss.detach())
                if not math.isfinite(value):
                    if distributed is None:
                        return EpochStats(value, structures, time.perf_counter() - start, True)
                    bad = True
                total += value * known if math.isfinite(value) else 0.0
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update()
            if scheduler is not None:
                scheduler.step()
            weight += known
            structures += batch.num_graphs
    if defer:
        total = float(on_device)
        bad = bad or not math.isfinite(total)
        total = 0.0 if bad else total
    if distributed is not None:
        total, weight, count, flags = distributed.sum([total, weight, structures, float(bad)])
        structures, bad = int(count), flags > 0
    seconds = time.perf_counter() - start
    return EpochStats(math.nan if bad else total / max(weight, 1.0), structures, seconds, bad)


def _batch_weight(batch: GraphBatch, loss_kind: str) -> float:
    """How many terms the batch loss averages: known entries, or (``masked_l1``) structures."""
    if batch.target_mask is None:
        return float(batch.targets.numel() if loss_kind != "masked_l1" else batch.num_graphs)
    if loss_kind == "masked_l1":
        return float(batch.target_mask.any(dim=1).sum())
    return float(batch.target_mask.sum())


class EarlyStopping:
    """Track the lowest monitored validation value (:func:`monitored_metric`); stop after
    ``patience`` epochs without a new one.

    ``patience=None`` never stops. Non-finite values never count as an improvement. Epochs up
    to ``start_epoch`` (the one-cycle warm-up, :meth:`TrainConfig.patience_start_epoch`) can
    set the best but never count towards patience.
    """

    def __init__(self, patience: int | None, start_epoch: int = 0) -> None:
        self.patience = patience
        self.start_epoch = start_epoch
        self.best = math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record epoch ``epoch``'s value; True when it is a new best."""
        if math.isfinite(value) and value < self.best:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        if epoch > self.start_epoch:
            self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience


@dataclass
class FitResult:
    """Outcome of :func:`fit`; the model holds ``best_state`` afterwards (when there is one),
    or with ``cfg.weights == "last"`` the final epoch's weights.

    Attributes:
        best_epoch: 1-based epoch of the lowest monitored value (None if no finite one).
        best_val_mae: the validation MAE of that epoch, in normalised units.
        epochs_run: epochs started (the last one may have diverged part-way).
        early_stopped: stopped by patience before ``cfg.epochs``.
        diverged: a non-finite training loss or validation MAE stopped training.
        history: one dict per epoch: epoch, train_loss, val_loss, val_mae, lr, seconds.
        train_seconds: wall time of the whole loop (training and validation).
        train_structures_per_second: training structures per second of training steps.
        best_state: copy of the best weights (``state_dict``), or None.
        monitor: the history column that chose ``best_epoch`` and early stopping
            (:func:`monitored_metric`: ``val_mae``, or ``val_loss`` for ``masked_l1``).
        best_val_loss: the validation loss of the best epoch (normalised units).
        resumed_from_epoch: the checkpointed epoch training resumed after (None: from 1).
        precision: the precision training ran in (:mod:`tlsearch.training.precision`).
        final_state: the final epoch's weights (unwrapped module's ``state_dict``) when the
            model holds the best epoch's and that is another epoch (``cfg.weights: best``), so
            a run can also score the weights the paper's test predictions came from; else None.
    """

    best_epoch: int | None
    best_val_mae: float
    epochs_run: int
    early_stopped: bool
    diverged: bool
    history: list[dict[str, float]]
    train_seconds: float
    train_structures_per_second: float
    best_state: dict[str, Any] | None = field(default=None, repr=False)
    monitor: str = "val_mae"
    best_val_loss: float = math.nan
    resumed_from_epoch: int | None = None
    precision: str = "fp32"
    final_state: dict[str, Any] | None = field(default=None, repr=False)


def _progress_bar(total: int, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        desc="epochs",
        unit="epoch",
        disable=not (enabled and sys.stderr.isatty()),
        leave=False,
    )


def fit(
    model: nn.Module,
    train: BatchSource,
    val: BatchSource,
    cfg: TrainConfig,
    *,
    device: torch.device | None = None,
    named_parameters: NamedParameters | None = None,
    progress: bool = True,
    distributed: Distributed | None = None,
    checkpoints: EpochCheckpoints | None = None,
) -> FitResult:
    """Train ``model`` on ``train``, validating on ``val`` every epoch; restore the best weights
    (``cfg.weights: last`` keeps the final epoch's).

    Args:
        model: a module whose ``forward(batch)`` returns (B, P) in normalised units.
        train: training batches (shuffled per epoch by the loader).
        val: validation batches with targets.
        cfg: epochs, optimiser, scheduler, loss, patience, seed, log_every.
        device: where to train (default: ``cfg.device`` resolved); the model is moved there.
        named_parameters: parameters to optimise (default: ``model.named_parameters()``); only
            those with ``requires_grad`` are used, so frozen layers stay frozen.
        progress: show a tqdm bar over epochs (only on a terminal).
        distributed: train as one rank of a DDP job (:mod:`tlsearch.training.distributed`):
            ``model`` is wrapped in ``DistributedDataParallel``, ``train`` yields this rank's
            slices of the global batches and ``val`` its shard of the validation set; every
            rank validates on all ranks' predictions and so stops at the same epoch with the
            same best weights. Only rank 0 logs.
        checkpoints: save the loop's state every ``checkpoints.every`` epochs and resume from
            the one it holds (:mod:`tlsearch.training.resume`); ``train_seconds`` then counts
            the epochs trained before the interruption too.
    """
    device = device or (distributed.device if distributed else select_device(cfg.device))
    seed_everything(cfg.seed)
    model.to(device)
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    main = distributed is None or distributed.is_main
    optimizer = build_optimizer(
        named_parameters if named_parameters is not None else model.named_parameters(), cfg,
        depth=layer_depth(inner) if cfg.layer_lr_decay is not None else None,
    )  # fmt: skip
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=max(len(train), 1))
    stopper = EarlyStopping(cfg.early_stopping_patience, cfg.patience_start_epoch())
    monitor = monitored_metric(cfg.loss)
    denominator = cfg.mpt_loss_denominator
    history: list[dict[str, float]] = []
    best_state: dict[str, Any] | None = None
    diverged = early_stopped = False
    step_seconds, structures, elapsed_before = 0.0, 0, 0.0
    precision = effective_precision(cfg.precision, device)
    fingerprint = recipe_fingerprint(cfg, train.num_structures, len(train))
    state = usable_state(checkpoints, fingerprint, cfg.epochs)
    ema = WeightAverage(inner, cfg.ema_decay) if cfg.ema_decay is not None else None
    averaged = ema.applied if ema is not None else contextlib.nullcontext
    if state is not None:
        best_state, history = state["best_state"], state["history"]
        step_seconds, structures, elapsed_before = state["counters"]
        _restore(state, inner, optimizer, scheduler, stopper)
        if ema is not None:
            ema.load_state_dict(state["ema"])
    first_epoch = 1 if state is None else int(state["epoch"]) + 1
    start = time.perf_counter()
    bar = _progress_bar(cfg.epochs, progress and main)
    bar.update(first_epoch - 1)
    epoch = 0
    with contextlib.closing(bar), matmul_precision(precision), retained_heap(device):
        for epoch in range(first_epoch, cfg.epochs + 1):
            lr = float(optimizer.param_groups[0]["lr"])
            stats = train_one_epoch(
                model, train, optimizer, scheduler, cfg.loss, device, epoch, denominator,
                distributed, precision, ema=ema,
            )  # fmt: skip
            step_seconds += stats.seconds
            structures += stats.structures
            if stats.diverged:
                logger.warning(
                    "epoch %d: training loss is %s; stopping (diverged)", epoch, stats.loss
                )
                history.append(_row(epoch, stats, math.nan, math.nan, lr))
                diverged = True
                break
            if distributed is not None:
                distributed.broadcast_buffers(inner)  # rank 0's BatchNorm statistics
            with averaged():  # the EMA's weights, when kept, are the ones validated and saved
                val_loss, val_mae = validate(inner, val, device, cfg.loss, denominator, distributed)
                history.append(_row(epoch, stats, val_loss, val_mae, lr))
                if stopper.update(epoch, history[-1][monitor]):
                    best_state = copy.deepcopy(model.state_dict())
            bar.update(1)
            bar.set_postfix(train_loss=f"{stats.loss:.4g}", val_mae=f"{val_mae:.4g}")
            if main and (epoch % cfg.log_every == 0 or epoch == 1):
                logger.info(
                    "epoch %d/%d train_loss %.5g val_loss %.5g val_mae %.5g (best %s %.5g @ %s)",
                    epoch, cfg.epochs, stats.loss, val_loss, val_mae, monitor, stopper.best,
                    stopper.best_epoch,
                )  # fmt: skip
            if not math.isfinite(val_mae):
                logger.warning(
                    "epoch %d: validation MAE is %s; stopping (diverged)", epoch, val_mae
                )
                diverged = True
                break
            if stopper.should_stop:
                early_stopped = epoch < cfg.epochs
                logger.info(
                    "early stopping at epoch %d: no better %s for %d epochs",
                    epoch, monitor, stopper.bad_epochs,
                )  # fmt: skip
                break
            if checkpoints is not None and epoch % checkpoints.every == 0 and epoch < cfg.epochs:
                counters = (step_seconds, structures, elapsed_before + time.perf_counter() - start)
                extra = {"ema": ema.state_dict()} if ema is not None else {}
                checkpoints.save(
                    {"fingerprint": fingerprint, "epoch": epoch, "history": history,
                     "best_state": best_state, "counters": counters,
                     **_loop_state(inner, optimizer, scheduler, stopper), **extra}
                )  # fmt: skip
    if ema is not None:  # the model keeps the average (the last epoch's, for weights: last)
        ema.copy_to_model()
    final_state = None
    if best_state is not None and cfg.weights == "best":
        if stopper.best_epoch != epoch and not diverged:
            final_state = copy.deepcopy(inner.state_dict())
        model.load_state_dict(best_state)
    seconds = elapsed_before + time.perf_counter() - start
    best_row = history[stopper.best_epoch - 1] if stopper.best_epoch is not None else {}
    return FitResult(
        best_epoch=stopper.best_epoch,
        best_val_mae=best_row.get("val_mae", math.inf),
        epochs_run=epoch,
        early_stopped=early_stopped,
        diverged=diverged,
        history=history,
        train_seconds=seconds,
        train_structures_per_second=structures / step_seconds if step_seconds > 0 else math.nan,
        best_state=best_state,
        monitor=monitor,
        best_val_loss=best_row.get("val_loss", math.inf),
        resumed_from_epoch=None if state is None else int(state["epoch"]),
        precision=precision,
        final_state=final_state,
    )


def _loop_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    stopper: EarlyStopping,
) -> dict[str, Any]:
    """What an epoch leaves behind besides the history and the best weights."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "stopper": {
            "best": stopper.best,
            "best_epoch": stopper.best_epoch,
            "bad_epochs": stopper.bad_epochs,
        },  # fmt: skip
        "rng": torch.get_rng_state(),
    }


def _restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    stopper: EarlyStopping,
) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    for name, value in state["stopper"].items():
        setattr(stopper, name, value)
    torch.set_rng_state(state["rng"])


def _row(epoch: int, stats: EpochStats, val_loss: float, val_mae: float, lr: float) -> dict:
    return {
        "epoch": epoch,
        "train_loss": stats.loss,
        "val_loss": val_loss,
        "val_mae": val_mae,
        "lr": lr,
        "seconds": stats.seconds,
    }


__all__ = [  # the loop, and what it is built from (kept importable from here)
    "BatchSource", "Collatable", "EarlyStopping", "EpochStats", "FitResult", "GraphLoader",
    "TrainingOutOfMemoryError", "batch_chunks", "fit", "forward_training", "masked_loss",
    "monitored_metric", "num_batches", "out_of_memory_named", "predict_batches",
    "seed_everything", "select_device", "train_one_epoch", "validate", "validation_scores",
]  # fmt: skip
