"""The multi-property (MPT) corpus: several single-property datasets merged by material.

The paper agglomerates its seven datasets into one cumulative set in which "for each data point
(i.e., structure), we associate a one-hot encoded vector and a property list vector" (Sec. 2.6).
A material that is in two datasets must become ONE record carrying both values, or the MPT
model would see it twice and, worse, leakage control would miss it.

Matching is by structure, never by id (ids are row indices of different matminer tables):

1. group by reduced formula (a canonical, pymatgen-free key: :func:`formula_key`);
2. fast path: identical geometry and species (:meth:`StructureRecord.content_hash`) is the same
   material without calling the matcher;
3. otherwise pymatgen's ``StructureMatcher`` with its default tolerances (ltol 0.2, stol 0.3,
   angle_tol 5 degrees, primitive cells, volumes scaled) against one representative per
   material of the formula group.

Why not an exact canonical hash (formula + rounded lattice invariants + ...)? The same material
appears in different matminer datasets with different cells (primitive vs conventional
supercells), site orders, settings and slightly different relaxed lattices; a hash of rounded
numbers is either too strict (misses those) or unstable at rounding boundaries.
``StructureMatcher`` reduces both structures to primitive cells and compares them up to
symmetry and tolerances, and the formula grouping keeps its cost to small groups.

Two records of the SAME dataset are never merged (a material holds at most one value per
property); they stay separate records. Raw target values are kept: every property gets its
own scaler later, in the training layer.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import TYPE_CHECKING, Any

import numpy as np

from tlsearch.structures.records import StructureRecord

if TYPE_CHECKING:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)


def formula_key(species: Sequence[str]) -> str:
    """Reduced formula as a canonical key, elements sorted alphabetically (``Cl1Na1``)."""
    counts = Counter(species)
    divisor = reduce(math.gcd, counts.values())
    return "".join(f"{element}{count // divisor}" for element, count in sorted(counts.items()))


def to_pymatgen(record: StructureRecord) -> Structure:
    """The record as a pymatgen ``Structure`` (errors name the record)."""
    from pymatgen.core import Lattice, Structure

    try:
        return Structure(Lattice(record.lattice), list(record.species), record.frac_coords)
    except Exception as exc:  # pymatgen raises several types for bad species/geometry
        raise ValueError(f"record {record.id!r}: not a valid structure: {exc}") from exc


class MaterialIndex:
    """Structures grouped into materials: formula, then content hash, then StructureMatcher.

    ``add`` makes a new material represented by the record; ``find`` returns the first
    existing material the record matches (among those ``accept`` allows) and how it matched.
    """

    def __init__(self) -> None:
        self._records: list[StructureRecord] = []
        self._by_hash: dict[str, list[int]] = {}
        self._by_formula: dict[str, list[int]] = {}
        self._structures: dict[int, Structure] = {}
        self._matcher: StructureMatcher | None = None

    def __len__(self) -> int:
        return len(self._records)

    def record(self, material: int) -> StructureRecord:
        """The representative record of ``material``."""
        return self._records[material]

    def add(self, record: StructureRecord) -> int:
        """Register ``record`` as a new material; returns its index."""
        material = len(self._records)
        self._records.append(record)
        self._by_hash.setdefault(record.content_hash(), []).append(material)
        self._by_formula.setdefault(formula_key(record.species), []).append(material)
        return material

    def find(
        self, record: StructureRecord, accept: Callable[[int], bool] | None = None
    ) -> tuple[int, str] | None:
        """``(material, "hash" | "matcher")`` of the first match, or None."""
        allowed = accept or (lambda _: True)
        for material in self._by_hash.get(record.content_hash(), []):
            if allowed(material):
                return material, "hash"
        candidates = [
            m for m in self._by_formula.get(formula_key(record.species), []) if allowed(m)
        ]
        if not candidates:
            return None
        structure = to_pymatgen(record)
        for material in candidates:
            if self._get_matcher().fit(self._structure(material), structure):
                return material, "matcher"
        return None

    def _structure(self, material: int) -> Structure:
        if material not in self._structures:
            self._structures[material] = to_pymatgen(self._records[material])
        return self._structures[material]

    def _get_matcher(self) -> StructureMatcher:
        if self._matcher is None:
            from pymatgen.analysis.structure_matcher import StructureMatcher

            self._matcher = StructureMatcher()
        return self._matcher


@dataclass(frozen=True)
class MPTCorpus:
    """Merged multi-property records.

    Attributes:
        records: one per material; ``targets`` holds only the known properties (raw values).
        properties: property names, in column order of :meth:`mask` / :meth:`targets_matrix`.
        origins: per record, property -> id of the source record in that property's dataset.
        stats: build statistics (inputs, merges by hash and by matcher).
    """

    records: list[StructureRecord]
    properties: list[str]
    origins: list[dict[str, str]]
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def mask(self) -> np.ndarray:
        """(n, P) bool: True where the record has the property (the paper's one-hot vector)."""
        return np.array(
            [[p in r.targets for p in self.properties] for r in self.records], dtype=bool
        ).reshape(len(self.records), len(self.properties))

    def targets_matrix(self) -> np.ndarray:
        """(n, P) float64 raw values, NaN where unknown (the paper's property list vector)."""
        return np.array(
            [[r.targets.get(p, np.nan) for p in self.properties] for r in self.records],
            dtype=np.float64,
        ).reshape(len(self.records), len(self.properties))

    def report(self) -> dict[str, Any]:
        """Counts: records, merges (at build time), per property, properties per record."""
        mask = self.mask()
        per_record = Counter(int(k) for k in mask.sum(axis=1))
        return {
            "records": len(self.records),
            "properties": list(self.properties),
            "inputs": self.stats.get("inputs", 0),
            "merges": self.stats.get("merged_by_hash", 0) + self.stats.get("merged_by_matcher", 0),
            "merged_by_hash": self.stats.get("merged_by_hash", 0),
            "merged_by_matcher": self.stats.get("merged_by_matcher", 0),
            "per_property": {p: int(c) for p, c in zip(self.properties, mask.sum(axis=0))},
            "properties_per_record": dict(sorted(per_record.items())),
        }


def _target_value(record: StructureRecord, dataset: str, key: str) -> float:
    if key not in record.targets:
        raise ValueError(
            f"dataset {dataset!r}, record {record.id!r}: no target {key!r} "
            f"(has {sorted(record.targets)})"
        )
    value = float(record.targets[key])
    if not math.isfinite(value):
        raise ValueError(f"dataset {dataset!r}, record {record.id!r}: target {key!r} is {value}")
    return value


def build_corpus(
    datasets: Mapping[str, Sequence[StructureRecord]], target_key: str = "target"
) -> MPTCorpus:
    """Merge single-property datasets (property name -> records with ``target_key``).

    A record joins the first material it matches (see the module docstring) that does not yet
    hold its property; the merged record keeps the geometry and id (``"<property>:<id>"``) of
    the first dataset in which the material appears.

    Raises:
        ValueError: no dataset, a missing/non-finite target or duplicate ids in one dataset.
    """
    if not datasets:
        raise ValueError("build_corpus needs at least one dataset")
    index = MaterialIndex()
    members: list[dict[str, tuple[StructureRecord, float]]] = []
    stats = Counter(inputs=0, merged_by_hash=0, merged_by_matcher=0)
    for prop, records in datasets.items():
        ids = Counter(r.id for r in records)
        dup = [rid for rid, c in ids.items() if c > 1]
        if dup:
            raise ValueError(f"dataset {prop!r}: duplicate record ids {dup[:5]}")
        for record in records:
            value = _target_value(record, prop, target_key)
            stats["inputs"] += 1
            found = index.find(record, accept=lambda m, p=prop: p not in members[m])
            if found is None:
                index.add(record)
                members.append({})
                material = len(members) - 1
            else:
                material, how = found
                stats[f"merged_by_{how}"] += 1
            members[material][prop] = (record, value)
    merged = [_merged_record(group) for group in members]
    origins = [{prop: rec.id for prop, (rec, _) in group.items()} for group in members]
    corpus = MPTCorpus(merged, list(datasets), origins, dict(stats))
    logger.info("MPT corpus: %s", corpus.report())
    return corpus


def _merged_record(group: dict[str, tuple[StructureRecord, float]]) -> StructureRecord:
    first_prop, (first, _) = next(iter(group.items()))
    targets = {prop: value for prop, (_, value) in group.items()}
    return replace(first, id=f"{first_prop}:{first.id}", targets=targets)


def exclude_target(
    corpus: MPTCorpus,
    target: str,
    remove_structures: Sequence[StructureRecord],
    remove_matching: bool = True,
) -> tuple[MPTCorpus, dict[str, Any]]:
    """The corpus for pre-training before fine-tuning on ``target``, and what was removed.

    Every value of ``target`` is masked out (the property is dropped from ``properties``), as
    in the paper. With ``remove_matching=True`` (default) every record whose structure matches
    any of ``remove_structures`` (``target``'s FT and test sets) is also REMOVED with all its
    other properties; this is stricter than the paper, which only masks ``target`` and so lets
    the MPT model see FT/test structures through their other properties. Records left with no
    property are dropped (they carry no training signal).

    Raises:
        ValueError: ``target`` is not a property of the corpus.
    """
    if target not in corpus.properties:
        raise ValueError(f"target {target!r} is not in the corpus; properties: {corpus.properties}")
    index = MaterialIndex()
    for record in remove_structures if remove_matching else ():
        index.add(record)
    kept: list[StructureRecord] = []
    kept_origins: list[dict[str, str]] = []
    removed: list[dict[str, str]] = []
    dropped = 0
    for record, origin in zip(corpus.records, corpus.origins):
        found = index.find(record) if remove_matching else None
        if found is not None:
            material, how = found
            removed.append({"id": record.id, "matches": index.record(material).id, "by": how})
            continue
        targets = {p: v for p, v in record.targets.items() if p != target}
        if not targets:
            dropped += 1
            continue
        kept.append(replace(record, targets=targets))
        kept_origins.append({p: i for p, i in origin.items() if p != target})
    properties = [p for p in corpus.properties if p != target]
    result = MPTCorpus(kept, properties, kept_origins, dict(corpus.stats))
    report = {
        "target": target,
        "query_structures": len(remove_structures),
        "records_before": len(corpus),
        "records_after": len(kept),
        "masked_values": int(sum(target in r.targets for r in corpus.records)),
        "removed_matching": len(removed),
        "dropped_without_property": dropped,
        "removed": removed,
    }
    logger.info(
        "excluded %s: %d -> %d records (%d matched FT/test structures, %d left without property)",
        target,
        len(corpus),
        len(kept),
        len(removed),
        dropped,
    )
    return result, report
