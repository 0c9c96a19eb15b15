"""Predict with a saved ``model.pt`` (or an ensemble of them) on any data spec.

Writes ``id,[target,]prediction``; an ensemble (several ``model.pt``, or a folder with the
``ensemble.json`` that ``tlsearch best-pair`` exports, one fine-tuned model per seed) adds
``prediction_std`` (the spread over members, ddof 1) and predicts their mean. Predictions are
in physical units (each model's target scaler is inverted). When the data carries the model's
targets, a ``target`` column is written and R2/MAE/RMSE (of the mean) are returned and logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlsearch.training.checkpoint import load_model
from tlsearch.training.loop import GraphLoader, predict_batches, select_device
from tlsearch.training.metrics import target_metrics
from tlsearch.training.run import prepare_data, rejection_rows, write_predictions_csv

logger = logging.getLogger(__name__)

ENSEMBLE_MANIFEST = "ensemble.json"


def model_files(model_path: Path | str | Sequence[Path | str]) -> list[Path]:
    """The ``model.pt`` files behind ``model_path``.

    Accepts a ``model.pt``, several of them, a folder with ``ensemble.json`` (members relative
    to it) or a folder with ``model.pt`` (a ``tlsearch train`` output).

    Raises:
        FileNotFoundError: a path that is none of these (named in the message).
    """
    if isinstance(model_path, (str, Path)):
        paths = [Path(model_path)]
    else:
        paths = [Path(p) for p in model_path]
    files: list[Path] = []
    for path in paths:
        manifest = path / ENSEMBLE_MANIFEST
        if path.is_dir() and manifest.is_file():
            members = json.loads(manifest.read_text()).get("members") or []
            files += [path / m["model"] for m in members]
        elif path.is_dir() and (path / "model.pt").is_file():
            files.append(path / "model.pt")
        elif path.is_dir():
            raise FileNotFoundError(f"{path} holds neither {ENSEMBLE_MANIFEST} nor model.pt")
        else:
            files.append(path)
    if not files:
        raise FileNotFoundError(f"no model files in {model_path}")
    return files


def predict(
    model_path: Path | str | Sequence[Path | str],
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
        model_path: a ``model.pt`` written by ``tlsearch train``, several, or an ensemble folder
            (see :func:`model_files`); members must share targets and graph settings.
        data_spec: any spec ``load_data`` accepts; targets are optional.
        out_csv: output CSV path (its folder is created).
        batch_size: structures per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        cache_dir: graph cache folder (``None``: in memory).
        target: property to read from the data for the ``target`` column (loader default if None).
        data_home: where named datasets are looked up.
        progress: show progress bars while building graphs.

    Returns:
        ``{"out", "n", "n_models", "n_rejected", "rejected", "metrics"}``; ``metrics`` is None
        without targets.
    """
    torch_device = select_device(device)
    files = model_files(model_path)
    models = [load_model(path, torch_device) for path in files]
    model, bundle = models[0]
    names = bundle.target_names
    for path, (_, other) in zip(files[1:], models[1:], strict=True):
        if other.target_names != names or other.graph_settings != bundle.graph_settings:
            raise ValueError(
                f"ensemble member {path} predicts {other.target_names} with other graph settings "
                f"than {files[0]} ({names}); members must match"
            )
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
    member_predictions = []
    for member, member_bundle in models:
        ids, pred_norm, _ = predict_batches(member, loader, torch_device)
        member_predictions.append(member_bundle.scaler.inverse_transform(pred_norm))
    stacked = np.stack(member_predictions)
    predictions = stacked.mean(axis=0)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    spread = stacked.std(axis=0, ddof=1) if len(models) > 1 else None
    write_predictions_csv(out_csv, ids, names, predictions, data.targets, spread)
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
        "n_models": len(models),
        "n_rejected": len(rejected),
        "rejected": rejected[:100],
        "metrics": metrics,
    }
