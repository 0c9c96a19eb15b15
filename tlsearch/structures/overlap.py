"""Train/test overlap: test structures identical to a training one.

Two structures are identical when their :meth:`StructureRecord.content_hash` (lattice,
fractional coordinates and species, the graph cache's key; not ids, not targets) is equal. A
test structure the model trained or validated on leaks into the test metrics, so a run refuses
it unless told to allow it (:func:`check_test_overlap`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tlsearch.structures.records import StructureRecord

logger = logging.getLogger(__name__)

#: (train id, test id) pairs named in the refusal.
PAIRS_IN_MESSAGES = 10

ALLOW_HINT = (
    "pass --allow-test-overlap (config: allow_test_overlap: true; in a search spec: the "
    "dataset's allow_test_overlap: true) to run anyway"
)


@dataclass(frozen=True)
class Overlap:
    """Test structures identical to a training structure.

    Attributes:
        pairs: one (train id, test id) per overlapping test structure (the first training
            structure with its content), in test order.
    """

    pairs: list[tuple[str, str]]

    @property
    def count(self) -> int:
        """Number of test structures identical to a training structure."""
        return len(self.pairs)

    def describe(self) -> str:
        """The first :data:`PAIRS_IN_MESSAGES` pairs as ``train=ID test=ID``, and how many more."""
        shown = ", ".join(f"train {a!r} = test {b!r}" for a, b in self.pairs[:PAIRS_IN_MESSAGES])
        more = self.count - PAIRS_IN_MESSAGES
        return shown + (f", ... and {more} more" if more > 0 else "")


def find_overlap(train: Iterable[StructureRecord], test: Iterable[StructureRecord]) -> Overlap:
    """The test structures whose content hash equals a training structure's."""
    first_train: dict[str, str] = {}
    for record in train:
        first_train.setdefault(record.content_hash(), record.id)
    pairs = [
        (first_train[h], record.id)
        for record in test
        if (h := record.content_hash()) in first_train
    ]
    return Overlap(pairs)


def check_test_overlap(
    train: Sequence[StructureRecord],
    test: Sequence[StructureRecord],
    allow: bool = False,
    what: str = "test data",
) -> Overlap:
    """Refuse test structures identical to training ones (or, with ``allow``, warn).

    Args:
        train: the structures the model trains and validates on.
        test: the held-out structures.
        allow: log a warning instead of raising.
        what: names the test data in the messages (e.g. its spec).

    Returns:
        The overlap (``count`` 0 when none).

    Raises:
        ValueError: when some test structure is identical to a training one and not ``allow``;
            names the count, up to :data:`PAIRS_IN_MESSAGES` (train id, test id) pairs and how
            to allow it.
    """
    overlap = find_overlap(train, test)
    if overlap.count == 0:
        return overlap
    text = (
        f"{what}: {overlap.count} of {len(test)} test structures are identical to training "
        f"structures (same lattice, coordinates and species): {overlap.describe()}"
    )
    if not allow:
        raise ValueError(f"{text}; they would leak into the test metrics. {ALLOW_HINT}")
    logger.warning("%s (allowed: test metrics include them)", text)
    return overlap


def drop_from_test(
    records: Sequence[StructureRecord], pool_idx: Sequence[int], test_idx: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Move test indices whose structure also sits in the pool into the pool.

    A dataset holding one structure under several ids (e.g. two entries of one material) would
    otherwise put copies on both sides of a random pool/test split. Returns (pool, test):
    the pool sorted, the test in its input order.
    """
    in_pool = {records[i].content_hash() for i in pool_idx}
    moved = [i for i in test_idx if records[i].content_hash() in in_pool]
    if not moved:
        return list(pool_idx), list(test_idx)
    logger.warning(
        "%d held-out structures are identical to training-pool ones (ids %s); they join the pool",
        len(moved),
        ", ".join(records[i].id for i in moved[:PAIRS_IN_MESSAGES]),
    )
    moved_set = set(moved)
    return sorted([*pool_idx, *moved]), [i for i in test_idx if i not in moved_set]
