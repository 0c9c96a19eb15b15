"""Tests for train/test overlap detection by the graph cache's content hash."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from tlsearch.structures.overlap import check_test_overlap, drop_from_test, find_overlap
from tlsearch.structures.records import StructureRecord


def cell(rid: str, a: float, target: float = 0.0) -> StructureRecord:
    return StructureRecord(
        id=rid,
        lattice=np.eye(3) * a,
        frac_coords=np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]),
        species=("Cs", "Cl"),
        targets={"target": target},
    )


def test_identical_structures_under_other_ids_and_targets_overlap() -> None:
    train = [cell("t1", 4.0), cell("t2", 4.1), cell("t3", 4.0)]
    test = [cell("x1", 4.1, target=9.0), cell("x2", 4.2), cell("x3", 4.0)]
    overlap = find_overlap(train, test)
    assert overlap.pairs == [("t2", "x1"), ("t1", "x3")]
    assert overlap.count == 2
    other_species = replace(test[1], species=("Cs", "Br"))
    assert find_overlap(train, [other_species]).count == 0


def test_refusal_names_count_pairs_and_how_to_allow() -> None:
    train = [cell(f"t{i}", 4.0 + i / 100) for i in range(15)]
    test = [cell(f"x{i}", 4.0 + i / 100) for i in range(12)] + [cell("new", 9.0)]
    with pytest.raises(ValueError) as info:
        check_test_overlap(train, test, what="test.json")
    text = str(info.value)
    assert text.startswith("test.json: 12 of 13 test structures are identical to training")
    assert "train 't0' = test 'x0'" in text and "train 't9' = test 'x9'" in text
    assert "'x10'" not in text and "... and 2 more" in text
    assert "--allow-test-overlap" in text and "allow_test_overlap: true" in text


def test_allowed_overlap_warns_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        overlap = check_test_overlap([cell("t", 4.0)], [cell("x", 4.0)], allow=True)
    assert overlap.count == 1
    assert "1 of 1 test structures are identical" in caplog.text and "allowed" in caplog.text
    assert check_test_overlap([cell("t", 4.0)], [cell("x", 4.5)]).count == 0


def test_drop_from_test_moves_copies_of_pool_structures_into_the_pool() -> None:
    records = [cell("a", 4.0), cell("b", 4.1), cell("a-copy", 4.0), cell("c", 4.2)]
    assert drop_from_test(records, [0, 1], [2, 3]) == ([0, 1, 2], [3])
    assert drop_from_test(records, [1, 3], [0, 2]) == ([1, 3], [0, 2])  # copies on one side
