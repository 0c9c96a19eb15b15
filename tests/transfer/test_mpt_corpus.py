"""MPT corpus: merging by structure (hash fast path and StructureMatcher), leakage control."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import rocksalt
from tlsearch.structures.records import StructureRecord
from tlsearch.transfer.mpt_corpus import (
    MPTCorpus,
    build_corpus,
    exclude_target,
    formula_key,
    to_pymatgen,
)

logger = logging.getLogger(__name__)

PAPER_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "paper"
PAPER_CODES = ("bg", "fe", "gv", "ph", "dc", "pz", "ebg")
_FCC = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]


def _rec(rid: str, lattice, frac, species, value: float) -> StructureRecord:
    return StructureRecord(
        rid, np.asarray(lattice, float), np.asarray(frac, float), tuple(species), {"target": value}
    )


def nacl_conventional(rid: str, value: float) -> StructureRecord:
    """8-atom cubic NaCl cell, sites interleaved (Na, Cl, Na, ...): another cell and site order."""
    frac, species = [], []
    for p in _FCC:
        frac += [p, ((p[0] + 0.5) % 1, p[1], p[2])]
        species += ["Na", "Cl"]
    return _rec(rid, np.eye(3) * 5.64, frac, species, value)


def cscl(rid: str, value: float) -> StructureRecord:
    return _rec(rid, np.eye(3) * 4.12, [(0, 0, 0), (0.5, 0.5, 0.5)], ["Cs", "Cl"], value)


def cscl_supercell(rid: str, value: float) -> StructureRecord:
    """CsCl doubled along a, 1 % larger: the same material for StructureMatcher (volume scaled)."""
    lattice = np.diag([8.24, 4.12, 4.12]) * 1.01
    frac = [(0, 0, 0), (0.25, 0.5, 0.5), (0.5, 0, 0), (0.75, 0.5, 0.5)]
    return _rec(rid, lattice, frac, ["Cs", "Cl", "Cs", "Cl"], value)


def _with(record: StructureRecord, rid: str, value: float) -> StructureRecord:
    return StructureRecord(
        rid, record.lattice, record.frac_coords, record.species, {"target": value}
    )


@pytest.fixture
def datasets() -> dict[str, list[StructureRecord]]:
    """A: NaCl, an identical NaCl, CsCl. B: NaCl (other cell), CsCl (same), KCl. C: CsCl x2."""
    nacl = rocksalt(rid="1")
    return {
        "A": [_with(nacl, "1", 1.0), _with(nacl, "3", 1.1), cscl("2", 2.0)],
        "B": [
            nacl_conventional("1", 10.0),
            cscl("77", 20.0),
            _with(rocksalt(6.29, ("K", "Cl")), "5", 30.0),
        ],
        "C": [cscl_supercell("9", 200.0)],
    }


def test_same_material_is_merged_across_datasets(datasets) -> None:
    corpus = build_corpus(datasets)
    by_origin = {tuple(sorted(o.items())): r for r, o in zip(corpus.records, corpus.origins)}
    assert by_origin[(("A", "1"), ("B", "1"))].targets == {"A": 1.0, "B": 10.0}  # matcher
    assert by_origin[(("A", "2"), ("B", "77"), ("C", "9"))].targets == {
        "A": 2.0,
        "B": 20.0,
        "C": 200.0,
    }
    assert by_origin[(("A", "3"),)].targets == {"A": 1.1}  # same dataset: never merged
    assert by_origin[(("B", "5"),)].targets == {"B": 30.0}
    assert by_origin[(("A", "1"), ("B", "1"))].id == "A:1"
    report = corpus.report()
    assert report["records"] == 4 and report["inputs"] == 7 and report["merges"] == 3
    assert report["merged_by_hash"] == 1 and report["merged_by_matcher"] == 2
    assert report["per_property"] == {"A": 3, "B": 3, "C": 1}
    assert report["properties_per_record"] == {1: 2, 2: 1, 3: 1}


def test_mask_and_targets_matrix(datasets) -> None:
    corpus = build_corpus(datasets)
    mask, values = corpus.mask(), corpus.targets_matrix()
    assert mask.shape == values.shape == (4, 3)
    assert np.array_equal(mask, np.isfinite(values))
    assert np.nansum(values) == pytest.approx(1.0 + 1.1 + 2.0 + 10 + 20 + 30 + 200)


def _matches_any(records, queries) -> list[tuple[str, str]]:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    return [
        (r.id, q.id)
        for r, q in itertools.product(records, queries)
        if formula_key(r.species) == formula_key(q.species)
        and matcher.fit(to_pymatgen(r), to_pymatgen(q))
    ]


def test_exclusion_masks_target_and_removes_ft_test_structures(datasets) -> None:
    corpus = build_corpus(datasets)
    ft_and_test = [
        nacl_conventional("ft-1", 10.0),
        _with(rocksalt(6.29, ("K", "Cl")), "test-5", 30.0),
    ]
    pruned, report = exclude_target(corpus, "B", ft_and_test)
    assert pruned.properties == ["A", "C"]
    assert all("B" not in r.targets for r in pruned.records)
    assert _matches_any(pruned.records, ft_and_test) == []
    assert [r.targets for r in pruned.records] == [{"A": 2.0, "C": 200.0}]
    assert report["removed_matching"] == 3  # both NaCl records and KCl
    assert report["masked_values"] == 3 and report["records_after"] == 1
    assert {row["id"] for row in report["removed"]} == {"A:1", "A:3", "B:5"}


def test_paper_exclusion_only_masks(datasets) -> None:
    corpus = build_corpus(datasets)
    pruned, report = exclude_target(
        corpus, "B", [nacl_conventional("ft", 0.0)], remove_matching=False
    )
    assert len(pruned) == 3 and report["dropped_without_property"] == 1  # KCl had only B
    assert all("B" not in r.targets for r in pruned.records)
    assert isinstance(pruned, MPTCorpus) and len(corpus) == 4  # the input is not modified


def test_bad_input_is_named(datasets) -> None:
    with pytest.raises(ValueError, match="target 'X' is not in the corpus"):
        exclude_target(build_corpus(datasets), "X", [])
    broken = StructureRecord("b7", np.eye(3), np.zeros((1, 3)), ("Po",), {"other": 1.0})
    with pytest.raises(ValueError, match="dataset 'D', record 'b7': no target 'target'"):
        build_corpus({"D": [broken]})
    with pytest.raises(ValueError, match="dataset 'A': duplicate record ids"):
        build_corpus({"A": [cscl("1", 0.0), cscl("1", 1.0)]})


@pytest.mark.realdata
def test_paper_trial_sets_corpus() -> None:
    if not PAPER_DATA.is_dir():
        pytest.skip(f"{PAPER_DATA} is not present")
    from tlsearch.structures.load import load_data

    start = time.perf_counter()
    datasets = {
        code.upper(): load_data(PAPER_DATA / "ft" / code / f"{code}_trial1_100.json.gz").records
        for code in PAPER_CODES
    }
    corpus = build_corpus(datasets)
    report = corpus.report()
    logger.info("paper trial1_100 corpus: %s (%.1f s)", report, time.perf_counter() - start)
    assert report["inputs"] == sum(len(r) for r in datasets.values())
    assert report["records"] + report["merges"] == report["inputs"]
    assert sum(report["per_property"].values()) == report["inputs"]
