"""Predict with a saved ``model.pt`` on any data spec; writes ``id,[target,]prediction``.

Predictions are in physical units (the model's target scaler is inverted). When the data carries
the model's targets, a ``target`` column is written and R2/MAE/RMSE are returned and logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tlsearch.training.checkpoint import load_model
from tlsearch.training.loop import GraphLoader, predict_batches, select_device
from tlsearch.training.metrics import target_metrics
from tlsearch.training.run import prepare_data, rejection_rows, write_predictions_csv

logger = logging.getLogger(__name__)


def predict(
    model_path: Path | str,
    data_spec: str,
    out_csv: Path | str,
    batch_size: int = 64,
    *,
    device: str = "auto",
    cache_dir: Path | None = None,
    target: str | None = None,
    data_home: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every structure of ``data_spec`` and write ``out_csv``.

    Args:
        model_path: a ``model.pt`` written by ``tlsearch train``.
        data_spec: any spec ``load_data`` accepts; targets are optional.
        out_csv: output CSV path (its folder is created).
        batch_size: structures per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        cache_dir: graph cache folder (``None``: in memory).
        target: property to read from the data for the ``target`` column (loader default if None).
        data_home: where named datasets are looked up.
        progress: show progress bars while building graphs.

    Returns:
        ``{"out", "n", "n_rejected", "rejected", "metrics"}``; ``metrics`` is None without targets.
    """
    torch_device = select_device(device)
    model, bundle = load_model(model_path, torch_device)
    names = bundle.target_names
    data = prepare_data(
        data_spec,
        names=names,
        graph_settings=bundle.graph_settings,
        cache_dir=cache_dir,
        target=target,
        data_home=data_home,
        require_targets=False,
        role="prediction",
        progress=progress,
    )
    targets_norm = None if data.targets is None else bundle.scaler.transform(data.targets)
    loader = GraphLoader(data.store, np.arange(len(data.store)), targets_norm, batch_size)
    ids, pred_norm, _ = predict_batches(model, loader, torch_device)
    predictions = bundle.scaler.inverse_transform(pred_norm)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    write_predictions_csv(out_csv, ids, names, predictions, data.targets)
    metrics = None
    if data.targets is not None:
        metrics = target_metrics(data.targets, predictions, names)
        logger.info(
            "%s: R2 %.4g MAE %.4g RMSE %.4g (n=%d)",
            data_spec, metrics["r2"], metrics["mae"], metrics["rmse"], metrics["n"],
        )  # fmt: skip
    rejected = rejection_rows(data)
    logger.info("wrote %d predictions to %s (%d rejected)", len(ids), out_csv, len(rejected))
    return {
        "out": str(out_csv),
        "n": len(ids),
        "n_rejected": len(rejected),
        "rejected": rejected[:100],
        "metrics": metrics,
    }
