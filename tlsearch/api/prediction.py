"""The Python API of prediction: :func:`load_model` and :func:`predict` (re-exported by
:mod:`tlsearch.api`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from tlsearch.prediction import PredictInput, Predictor
    from tlsearch.structures.objects import Errors


def load_model(
    path: str | Path | Sequence[str | Path], device: str = "auto", kernel: str = "auto"
) -> Predictor:
    """A ``model.pt``, several, or an ensemble folder (``tlsearch best-pair``'s ``model/``),
    loaded once; ``.predict(structures)`` gives id, mean and std (the ensemble's spread).
    ``kernel``: ``auto``, ``reference`` or ``fused`` (:mod:`tlsearch.model.kernels.choice`)."""
    # torch (seconds): loaded on use, so that ``import tlsearch.api`` stays light
    from tlsearch.prediction import Predictor

    return Predictor.load(path, device, kernel)


def predict(
    model: str | Path | Sequence[str | Path] | Predictor,
    data: PredictInput,
    *,
    out: str | Path | None = None,
    ids: Sequence[str] | None = None,
    batch_size: int = 64,
    device: str = "auto",
    kernel: str = "auto",
    cache_dir: str | Path | None = None,
    target: str | None = None,
    data_home: str | Path | None = None,
    errors: Errors = "raise",
    progress: bool = False,
    allow_pickle: bool = False,
) -> pd.DataFrame:
    """Predict ``data`` with ``model`` (a path as :func:`load_model` takes, or a loaded one).

    Args:
        data: pymatgen ``Structure`` / ASE ``Atoms`` objects (one or a list), CIF/POSCAR paths,
            or a data spec string (a folder, ``data.db``, ``frames.extxyz``, a jarvis json...).
        out: also write the ``tlsearch predict`` CSV there.
        kernel: as :func:`load_model` (when ``model`` is a path).
        others: as :meth:`tlsearch.prediction.Predictor.predict`.

    Returns:
        ``id, mean, std[, target]`` per structure (one property; ``std`` is NaN for a single
        model), or ``mean_<name>, std_<name>...`` per property; ``attrs["rejected"]`` lists
        structures of a data spec that could not be used.
    """
    # torch (seconds): loaded on use, so that ``import tlsearch.api`` stays light
    from tlsearch.prediction import Predictor

    predictor = model if isinstance(model, Predictor) else Predictor.load(model, device, kernel)
    result = predictor.run(
        data, ids=ids, batch_size=batch_size, cache_dir=cache_dir, target=target,
        data_home=data_home, errors=errors, progress=progress, allow_pickle=allow_pickle,
    )  # fmt: skip
    if out is not None:
        result.write_csv(out)
    return result.frame()
