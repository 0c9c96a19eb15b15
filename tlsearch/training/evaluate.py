"""Evaluation inside and after training: predictions in eval mode, the validation scores, and
which validation value early stopping watches."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from tlsearch.training.batches import BatchSource
from tlsearch.training.losses import MPTLossDenominator, masked_l1
from tlsearch.training.oom import out_of_memory_named

if TYPE_CHECKING:
    from tlsearch.training.distributed import Distributed


@torch.no_grad()
def predict_batches(
    model: nn.Module, loader: BatchSource, device: torch.device
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Model outputs for every structure of ``loader`` in eval mode, in loader order.

    Returns:
        ids, predictions (N, P) float64, targets (N, P) float64 with NaN where unknown (or None
        when the loader has no targets).
    """
    model.eval()
    ids: list[str] = []
    preds: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    with out_of_memory_named(loader, device, "evaluation"):
        for batch in loader.batches(0):
            ids.extend(batch.ids)
            preds.append(model(batch.to(device)).detach().cpu().double().numpy())
            if batch.targets is not None:
                t = batch.targets.double().numpy()
                if batch.target_mask is not None:
                    t = np.where(batch.target_mask.numpy(), t, np.nan)
                targets.append(t)
    if not preds:
        return ids, np.zeros((0, 0)), None
    return ids, np.concatenate(preds), (np.concatenate(targets) if targets else None)


def validate(
    model: nn.Module,
    val: BatchSource,
    device: torch.device,
    loss_kind: str,
    denominator: MPTLossDenominator = "n_properties",
    distributed: Distributed | None = None,
) -> tuple[float, float]:
    """(loss, MAE) of ``model`` on ``val`` in normalised units, over the known targets.

    With ``distributed``, ``val`` is this rank's shard and the scores are those of every
    rank's predictions together (the same on every rank).
    """
    _, pred, true = predict_batches(model, val, device)
    if distributed is not None:
        empty = np.zeros((0, pred.shape[1] if pred.ndim == 2 else 0))
        pred = distributed.gather_rows(pred)
        true = distributed.gather_rows(empty if true is None else true)
    if true is None or true.size == 0 and pred.size > 0:
        raise ValueError("validation batches need targets")
    return validation_scores(pred, true, loss_kind, denominator)


def validation_scores(
    pred: np.ndarray,
    target: np.ndarray,
    loss_kind: str,
    denominator: MPTLossDenominator = "n_properties",
) -> tuple[float, float]:
    """(loss, MAE) over the known entries of ``target`` (NaN = unknown).

    The loss is the training objective on the whole validation set: the mean squared error
    (``mse``), the MAE (``l1``), or (``masked_l1``) :func:`masked_l1` with ``denominator``,
    i.e. the mean over validation structures of Eq. 1. The MAE is pooled over every known
    entry, so with several properties the largest dataset dominates it.
    """
    known = np.isfinite(target)
    if not known.any():
        return math.nan, math.nan
    diff = pred[known] - target[known]
    mae = float(np.mean(np.abs(diff)))
    if loss_kind == "masked_l1":
        loss = float(
            masked_l1(
                torch.from_numpy(np.asarray(pred, dtype=np.float64)),
                torch.from_numpy(np.where(known, target, 0.0).astype(np.float64)),
                torch.from_numpy(known),
                denominator,
            )
        )
    else:
        loss = float(np.mean(diff**2)) if loss_kind == "mse" else mae
    return loss, mae


def monitored_metric(loss_kind: str) -> str:
    """The history column early stopping and the best epoch watch for a run with ``loss_kind``.

    ``val_mae`` for single-property runs (the paper's); ``val_loss`` for ``masked_l1`` (MPT):
    the validation value of the training objective. A MAE pooled over all properties' entries
    would be dominated by the property with the most structures (formation energy, ~100k), so
    a model could keep "improving" on it while the other properties get worse. The paper's
    scripts do the same in effect: their validation ``MeanAbsoluteError`` runs on the masked
    outputs, so it equals their masked ``L1Loss``.
    """
    return "val_loss" if loss_kind == "masked_l1" else "val_mae"
