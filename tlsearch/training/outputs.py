"""A run's files: strict JSON written atomically, the history, predictions and rejections."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlsearch.training.data import PreparedData, rejection_rows
from tlsearch.training.metrics import json_safe


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write strict JSON (NaN -> null) atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(json_safe(data), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_history_csv(path: Path, history: list[dict[str, float]]) -> None:
    """One row per epoch: epoch, train_loss, val_loss, val_mae, lr, seconds."""
    fields = ["epoch", "train_loss", "val_loss", "val_mae", "lr", "seconds"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: row.get(k) for k in fields} for row in history)


def prediction_columns(
    names: Sequence[str], with_targets: bool, with_spread: bool = False
) -> list[str]:
    """``target,prediction[,prediction_std]`` for one property, else ``target:NAME,
    prediction:NAME[,prediction_std:NAME]`` per name."""
    cols: list[str] = []
    for name in names:
        suffix = "" if len(names) == 1 else f":{name}"
        cols += [f"target{suffix}"] if with_targets else []
        cols += [f"prediction{suffix}"] + ([f"prediction_std{suffix}"] if with_spread else [])
    return cols


def write_predictions_csv(
    path: Path | str,
    ids: Sequence[str],
    names: Sequence[str],
    predictions: np.ndarray,
    targets: np.ndarray | None = None,
    spread: np.ndarray | None = None,
) -> None:
    """``id,target,prediction`` rows (``target`` omitted when None; empty when unknown), and
    ``prediction_std`` after each prediction when an ensemble's ``spread`` is given."""
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        columns = prediction_columns(names, targets is not None, spread is not None)
        writer.writerow(["id", *columns])
        for i, rid in enumerate(ids):
            row: list[object] = [rid]
            for j in range(len(names)):
                if targets is not None:
                    row.append(_cell(targets[i, j]))
                row.append(_cell(predictions[i, j]))
                if spread is not None:
                    row.append(_cell(spread[i, j]))
            writer.writerow(row)


def write_rejected_csv(path: Path, *parts: PreparedData | None) -> None:
    """All rejected structures of the given parts: spec, id, stage, reason."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["data", "id", "stage", "reason"])
        for part in parts:
            if part is not None:
                for row in rejection_rows(part):
                    writer.writerow([part.spec, row["id"], row["stage"], row["reason"]])


def _cell(x: float) -> str:
    return "" if not math.isfinite(float(x)) else repr(float(x))
