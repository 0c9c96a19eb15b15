"""Target normalisation, fitted once per dataset on its non-test pool (paper Sec. 2.3).

The paper standardises every property and then min-max scales it into [-1, 1]. Both steps are
affine, so the scaler stores, per property, ``shift`` and ``scale`` with
``normalised = (physical - shift) / scale`` (and keeps the intermediate constants for the record).

Training fits it on the whole training pool before any PT subset, FT sample or validation split
is drawn (:func:`tlsearch.training.run.pool_scaler`), never on the test set; so all runs on one
dataset share one scaler and their normalised metrics are in the same units.
:meth:`TargetScaler.fingerprint` (``scaler_id`` in ``metrics.json``) tells whether two runs did.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, TypeVar

import numpy as np
import torch

Mode = Literal["none", "paper", "standardise"]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class TargetScaler:
    """Per-property affine scaler; ``mode`` is ``none``, ``standardise`` or ``paper``.

    Attributes:
        mode: the normalisation applied.
        shift: (P,) float64, subtracted from physical values.
        scale: (P,) float64, divides the shifted values (always > 0).
        stats: the fitted intermediate constants (mean, std, and for ``paper`` the min and max of
            the standardised training targets), for reporting.
    """

    def __init__(
        self,
        mode: Mode,
        shift: np.ndarray,
        scale: np.ndarray,
        stats: dict[str, list[float]] | None = None,
    ) -> None:
        shift = np.asarray(shift, dtype=np.float64).reshape(-1)
        scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        if shift.shape != scale.shape:
            raise ValueError(f"scaler shift {shift.shape} and scale {scale.shape} differ in shape")
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError(f"scaler scale must be finite and positive, got {scale.tolist()}")
        self.mode: Mode = mode
        self.shift = shift
        self.scale = scale
        self.stats = stats or {}

    @property
    def num_targets(self) -> int:
        return int(self.shift.shape[0])

    @classmethod
    def identity(cls, num_targets: int = 1) -> TargetScaler:
        """A scaler that changes nothing (``mode='none'``)."""
        return cls("none", np.zeros(num_targets), np.ones(num_targets))

    @classmethod
    def fit(cls, targets: np.ndarray, mode: Mode = "paper") -> TargetScaler:
        """Fit on a dataset's training pool (N,) or (N, P); NaN entries (unknown) are ignored.

        A property with zero spread gets scale 1 for that step, so the scaler stays invertible.
        """
        y = np.asarray(targets, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2:
            raise ValueError(f"targets must be (N,) or (N, P), got shape {y.shape}")
        num_targets = y.shape[1]
        if mode == "none":
            return cls.identity(num_targets)
        known = np.isfinite(y)
        empty = ~known.any(axis=0)
        if empty.any():
            raise ValueError(
                f"cannot fit the target scaler: target column(s) {np.flatnonzero(empty).tolist()} "
                "have no finite training value"
            )
        mean = np.nanmean(np.where(known, y, np.nan), axis=0)
        std = np.nanstd(np.where(known, y, np.nan), axis=0)
        std = np.where(std > 0, std, 1.0)
        stats = {"mean": mean.tolist(), "std": std.tolist()}
        if mode == "standardise":
            return cls(mode, mean, std, stats)
        if mode != "paper":
            raise ValueError(f"unknown target normalisation {mode!r}")
        z = (np.where(known, y, np.nan) - mean) / std
        zmin, zmax = np.nanmin(z, axis=0), np.nanmax(z, axis=0)
        centre = (zmax + zmin) / 2.0
        half_range = np.where(zmax > zmin, (zmax - zmin) / 2.0, 1.0)
        stats.update({"z_min": zmin.tolist(), "z_max": zmax.tolist()})
        return cls(mode, mean + std * centre, std * half_range, stats)

    def _constants(self, like: ArrayT) -> tuple[ArrayT, ArrayT]:
        if like.shape[-1] != self.num_targets:
            raise ValueError(
                f"values have {like.shape[-1]} target column(s), the scaler {self.num_targets}"
            )
        if isinstance(like, torch.Tensor):
            return (
                torch.as_tensor(self.shift, dtype=like.dtype, device=like.device),
                torch.as_tensor(self.scale, dtype=like.dtype, device=like.device),
            )
        return self.shift.astype(like.dtype, copy=False), self.scale.astype(like.dtype, copy=False)

    def transform(self, values: ArrayT) -> ArrayT:
        """Physical -> normalised; ``values`` is (..., P), numpy or torch (dtype kept)."""
        shift, scale = self._constants(values)
        return (values - shift) / scale

    def inverse_transform(self, values: ArrayT) -> ArrayT:
        """Normalised -> physical; ``values`` is (..., P), numpy or torch (dtype kept)."""
        shift, scale = self._constants(values)
        return values * scale + shift

    def fingerprint(self) -> str:
        """A short hash of the mode and constants: equal for scalers that transform alike."""
        text = json.dumps([self.mode, self.shift.tolist(), self.scale.tolist()])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (for ``model.pt`` and ``metrics.json``)."""
        return {
            "mode": self.mode,
            "shift": self.shift.tolist(),
            "scale": self.scale.tolist(),
            "stats": {k: list(v) for k, v in self.stats.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetScaler:
        """Inverse of :meth:`to_dict`; errors name the missing key."""
        for key in ("mode", "shift", "scale"):
            if key not in data:
                raise ValueError(f"target scaler record lacks {key!r}")
        if data["mode"] not in ("none", "paper", "standardise"):
            raise ValueError(f"target scaler record has unknown mode {data['mode']!r}")
        return cls(
            data["mode"], np.asarray(data["shift"]), np.asarray(data["scale"]), data.get("stats")
        )

    def __repr__(self) -> str:
        shift, scale = self.shift.tolist(), self.scale.tolist()
        return f"TargetScaler(mode={self.mode!r}, shift={shift}, scale={scale})"
