"""The one in-memory record every loader produces, and the bookkeeping of rejected ones."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class StructureRecord:
    """A periodic crystal structure with zero or more scalar targets.

    Attributes:
        id: unique identifier within a dataset (string form of jid, file stem, row index...).
        lattice: (3, 3) float64, rows are the lattice vectors in Angstrom.
        frac_coords: (N, 3) float64 fractional coordinates.
        species: N element symbols ("Si", "O", ...).
        targets: property name -> value (may be empty for prediction-only data).
    """

    id: str
    lattice: np.ndarray
    frac_coords: np.ndarray
    species: tuple[str, ...]
    targets: dict[str, float] = field(default_factory=dict)

    @property
    def num_atoms(self) -> int:
        return len(self.species)

    def content_hash(self) -> str:
        """Hash of the geometry and species only (not id, not targets): the graph cache key."""
        h = hashlib.blake2b(digest_size=16)
        h.update(np.ascontiguousarray(self.lattice, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.frac_coords, dtype=np.float64).tobytes())
        h.update(",".join(self.species).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class Rejection:
    """A record that was dropped, with why. Never silently lost: loaders return these."""

    id: str
    reason: str


@dataclass
class LoadResult:
    """Accepted records plus the rejected ones, so a run can report both.

    Attributes:
        masked_targets: unknown (NaN) values left out of multi-target records' ``targets``.
        target_order: every target name of the source in first-seen order, masked ones
            included (empty when unknown): the column order of the data's targets.
    """

    records: list[StructureRecord]
    rejected: list[Rejection] = field(default_factory=list)
    source: str = ""
    masked_targets: int = 0
    target_order: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "source": self.source,
            "accepted": len(self.records),
            "rejected": len(self.rejected),
            "masked_targets": self.masked_targets,
            "rejected_examples": [f"{r.id}: {r.reason}" for r in self.rejected[:10]],
        }


def finite_target(value: object) -> float:
    """Convert a target value to float, raising ValueError naming the problem."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"target {value!r} is not a number") from exc
    if not math.isfinite(x):
        raise ValueError(f"target is {x} (not finite)")
    return x
