"""Predict with a saved ``model.pt`` (or an ensemble of them) on any data or structures.

:class:`Predictor` loads the models once (``tlsearch.load_model``) and predicts a data spec or
structures held in memory (pymatgen ``Structure``, ASE ``Atoms``, CIF/POSCAR paths, records;
:mod:`tlsearch.structures.objects`); :func:`predict` is ``tlsearch predict``, writing the CSV.

An ensemble (several ``model.pt``, or a folder with the ``ensemble.json`` that ``tlsearch
best-pair`` exports, one fine-tuned model per seed) predicts the mean of its members and their
spread (standard deviation, ddof 1). Predictions are in physical units (each model's target
scaler is inverted). When the data carries the model's targets they are returned too, with
R2/MAE/RMSE of the mean.

The CSV has ``id,[target,]prediction[,prediction_std]``; the DataFrame of
:meth:`Predictor.predict` has ``id, mean, std[, target]`` (one property; ``std`` is NaN for a
single model), or ``mean_<name>, std_<name>[, target_<name>]`` per property.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlsearch.model.backbone import unwrap_trunk
from tlsearch.model.config import Kernel
from tlsearch.structures.objects import Errors, records_from_objects
from tlsearch.structures.records import LoadResult
from tlsearch.training.checkpoint import ModelBundle, load_model
from tlsearch.training.data import InputStoreFactory
from tlsearch.training.loop import GraphLoader, predict_batches, select_device
from tlsearch.training.metrics import target_metrics
from tlsearch.training.run import (
    PreparedData,
    prepare_data,
    rejection_rows,
    write_predictions_csv,
)

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

#: What :meth:`Predictor.predict` accepts: a data spec (str/Path), a loaded dataset, or one
#: structure or a sequence of them (see :func:`tlsearch.structures.objects.records_from_objects`).
PredictInput = Any

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


@dataclass
class Predictions:
    """One prediction pass: the ensemble's mean and spread per structure, in physical units.

    Attributes:
        ids: structure ids, in input order (rejected ones left out, see ``rejected``).
        names: the model's target names (the columns of the arrays).
        mean: (N, P) mean over members.
        std: (N, P) spread over members (ddof 1); None for a single model.
        targets: (N, P) the data's values of the targets (NaN unknown), None without any.
        rejected: structures no prediction was made for: id, stage (load/graph) and reason.
        n_models: ensemble members.
    """

    ids: list[str]
    names: list[str]
    mean: np.ndarray
    std: np.ndarray | None
    targets: np.ndarray | None
    rejected: list[dict[str, str]]
    n_models: int

    def metrics(self) -> dict[str, Any] | None:
        """R2/MAE/RMSE/n of the mean against the data's targets (None without targets)."""
        if self.targets is None:
            return None
        return target_metrics(self.targets, self.mean, self.names)

    def frame(self) -> pd.DataFrame:
        """``id, mean, std[, target]`` (one property) or ``mean_<name>, std_<name>...``."""
        import pandas as pd

        columns: dict[str, Any] = {"id": self.ids}
        std = self.std if self.std is not None else np.full_like(self.mean, np.nan)
        for j, name in enumerate(self.names):
            suffix = "" if len(self.names) == 1 else f"_{name}"
            columns[f"mean{suffix}"] = self.mean[:, j]
            columns[f"std{suffix}"] = std[:, j]
            if self.targets is not None:
                columns[f"target{suffix}"] = self.targets[:, j]
        frame = pd.DataFrame(columns)
        frame.attrs.update(n_models=self.n_models, rejected=self.rejected, targets=self.names)
        return frame

    def write_csv(self, path: Path | str) -> Path:
        """The ``tlsearch predict`` CSV (its folder is created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_predictions_csv(path, self.ids, self.names, self.mean, self.targets, self.std)
        return path


class Predictor:
    """A ``model.pt`` or an ensemble of them, loaded once, predicting in physical units.

    Made by :meth:`load` (``tlsearch.load_model``)::

        m = tlsearch.load_model("best_pair/DC/model")
        df = m.predict(atoms_list)  # columns id, mean, std
    """

    def __init__(
        self, files: list[Path], members: list[tuple[nn.Module, ModelBundle]], device: Any
    ) -> None:
        self.files = files
        self.members = members
        self.device: torch.device = device
        bundle = members[0][1]
        for path, (member, other) in zip(files[1:], members[1:], strict=True):
            if (
                other.target_names != bundle.target_names
                or other.graph_settings != bundle.graph_settings
                or _family(member) != _family(members[0][0])
            ):
                raise ValueError(
                    f"ensemble member {path} predicts {other.target_names} with other graph "
                    f"settings or backbone than {files[0]} ({bundle.target_names}); members "
                    "must match"
                )

    @classmethod
    def load(
        cls,
        model_path: Path | str | Sequence[Path | str],
        device: str = "auto",
        kernel: Kernel = "auto",
    ) -> Predictor:
        """Load ``model_path`` (see :func:`model_files`) on ``device`` (auto, cpu, cuda), its
        layers running ``kernel`` (:mod:`tlsearch.model.kernels.choice`)."""
        torch_device = select_device(device)
        files = model_files(model_path)
        members = [load_model(path, torch_device, kernel) for path in files]
        return cls(files, members, torch_device)

    @property
    def target_names(self) -> list[str]:
        """The properties it predicts."""
        return list(self.members[0][1].target_names)

    @property
    def n_models(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"Predictor({self.n_models} model(s) of {', '.join(self.target_names)})"

    def predict(
        self,
        data: PredictInput,
        *,
        ids: Sequence[str] | None = None,
        batch_size: int = 64,
        cache_dir: Path | str | None = None,
        target: str | None = None,
        data_home: Path | str | None = None,
        errors: Errors = "raise",
        progress: bool = False,
        allow_pickle: bool = False,
    ) -> pd.DataFrame:
        """Predict ``data``; returns :meth:`Predictions.frame` (``id, mean, std[, target]``).

        Args:
            data: a data spec (``str``/``Path``: any form ``load_data`` reads, e.g. a folder,
                a CIF/POSCAR file, ``data.db``), a loaded dataset, or one structure or a
                sequence of them (pymatgen ``Structure``, ASE ``Atoms``, CIF/POSCAR paths).
            ids: ids of in-memory structures (default: their positions, file names for paths).
            batch_size: structures per forward pass.
            cache_dir: graph cache folder (default None: graphs in memory).
            target: property read from a data spec for the ``target`` column.
            data_home: where named datasets are looked up.
            errors: for in-memory structures, ``"raise"`` (default): an unusable one raises,
                naming its position, id and reason; ``"skip"``: left out. Data specs always
                skip them, as every loader (the frame's ``attrs["rejected"]`` lists them).
            progress: progress bars while building graphs.
            allow_pickle: read a data spec that is a pickled table (``.pkl``): a pickle runs
                the code it holds when read, so only for files you trust.
        """
        return self.run(
            data, ids=ids, batch_size=batch_size, cache_dir=cache_dir, target=target,
            data_home=data_home, errors=errors, progress=progress, allow_pickle=allow_pickle,
        ).frame()  # fmt: skip

    def run(
        self,
        data: PredictInput,
        *,
        ids: Sequence[str] | None = None,
        batch_size: int = 64,
        cache_dir: Path | str | None = None,
        target: str | None = None,
        data_home: Path | str | None = None,
        errors: Errors = "raise",
        progress: bool = False,
        allow_pickle: bool = False,
    ) -> Predictions:
        """:meth:`predict` as arrays (:class:`Predictions`)."""
        prepared = self.prepare(
            data, ids, cache_dir, target, data_home, errors, progress, allow_pickle
        )
        bundle = self.members[0][1]
        targets = prepared.targets
        targets_norm = None if targets is None else bundle.scaler.transform(targets)
        loader = GraphLoader(
            prepared.store, np.arange(len(prepared.store)), targets_norm, batch_size
        )
        outputs = []
        ids_out: list[str] = []
        for member, member_bundle in self.members:
            ids_out, pred_norm, _ = predict_batches(member, loader, self.device)
            outputs.append(member_bundle.scaler.inverse_transform(pred_norm))
        stacked = np.stack(outputs)
        return Predictions(
            ids=list(ids_out),
            names=self.target_names,
            mean=stacked.mean(axis=0),
            std=stacked.std(axis=0, ddof=1) if len(outputs) > 1 else None,
            targets=targets,
            rejected=rejection_rows(prepared),
            n_models=len(outputs),
        )

    def prepare(
        self,
        data: PredictInput,
        ids: Sequence[str] | None = None,
        cache_dir: Path | str | None = None,
        target: str | None = None,
        data_home: Path | str | None = None,
        errors: Errors = "raise",
        progress: bool = False,
        allow_pickle: bool = False,
    ) -> PreparedData:
        """``data`` with its graphs, built with the models' graph settings."""
        bundle = self.members[0][1]
        in_memory = not isinstance(data, (str, Path))
        loaded: LoadResult | None = None
        if isinstance(data, LoadResult):
            loaded = data
        elif in_memory:
            loaded = records_from_objects(data, ids, errors=errors)
        spec = str(data) if not in_memory else (loaded.source or "structures")  # type: ignore[union-attr]
        prepared = prepare_data(
            spec,
            names=self.target_names,
            graph_settings=bundle.graph_settings,
            cache_dir=None if cache_dir is None else Path(cache_dir),
            target=target,
            data_home=None if data_home is None else Path(data_home),
            require_targets=False,
            role="prediction",
            progress=progress,
            loaded=loaded,
            allow_pickle=allow_pickle,
            input_store=_input_store(self.members[0][0]),
        )
        if in_memory and errors == "raise" and prepared.store.rejected:
            first = prepared.store.rejected[0]
            raise ValueError(f"structure {first.id!r}: no graph can be built ({first.reason})")
        return prepared


def _family(model: nn.Module) -> str | None:
    """The backbone family of a loaded model (None: a model on no backbone)."""
    try:
        return unwrap_trunk(model).family
    except TypeError:
        return None


def _input_store(model: nn.Module) -> InputStoreFactory | None:
    """The inputs a model reads: its family's store, or None (ALIGNN graphs, as always)."""
    family = _family(model)
    if family is None or family == "alignn":
        return None
    return type(unwrap_trunk(model)).input_store


def predict(
    model_path: Path | str | Sequence[Path | str],
    data_spec: str,
    out_csv: Path | str,
    batch_size: int = 64,
    *,
    device: str = "auto",
    kernel: Kernel = "auto",
    cache_dir: Path | None = None,
    target: str | None = None,
    data_home: Path | None = None,
    progress: bool = True,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Predict every structure of ``data_spec`` and write ``out_csv`` (``tlsearch predict``).

    Args:
        model_path: a ``model.pt`` written by ``tlsearch train``, several, or an ensemble folder
            (see :func:`model_files`); members must share targets and graph settings.
        data_spec: any spec ``load_data`` accepts; targets are optional.
        out_csv: output CSV path (its folder is created).
        batch_size: structures per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        kernel: ``auto``, ``reference`` or ``fused`` (:mod:`tlsearch.model.kernels.choice`).
        cache_dir: graph cache folder (``None``: in memory).
        target: property to read from the data for the ``target`` column (loader default if None).
        data_home: where named datasets are looked up.
        progress: show progress bars while building graphs.
        allow_pickle: read ``data_spec`` when it is a pickled table (``--allow-pickle``): a
            pickle runs the code it holds when read, so only for files you trust.

    Returns:
        ``{"out", "n", "n_models", "n_rejected", "rejected", "metrics"}``; ``metrics`` is None
        without targets.
    """
    predictor = Predictor.load(model_path, device, kernel)
    result = predictor.run(
        data_spec, batch_size=batch_size, cache_dir=cache_dir, target=target,
        data_home=data_home, progress=progress, allow_pickle=allow_pickle,
    )  # fmt: skip
    out = result.write_csv(out_csv)
    metrics = result.metrics()
    if metrics is not None:
        logger.info(
            "%s: R2 %.4g MAE %.4g RMSE %.4g (n=%d)",
            data_spec, metrics["r2"], metrics["mae"], metrics["rmse"], metrics["n"],
        )  # fmt: skip
    rejected = result.rejected
    logger.info("wrote %d predictions to %s (%d rejected)", len(result.ids), out, len(rejected))
    return {
        "out": str(out),
        "n": len(result.ids),
        "n_models": result.n_models,
        "n_rejected": len(rejected),
        "rejected": rejected[:100],
        "metrics": metrics,
    }
