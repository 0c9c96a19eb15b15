"""Tests for the single validation point: every rejection reason is named and counted."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tlsearch.structures.records import Rejection
from tlsearch.structures.validate import (
    ELEMENT_SYMBOLS,
    InvalidRecordError,
    RawRecord,
    element_symbol,
    to_record,
    validate_records,
)

CUBIC = [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]


def raw(rid: object = "a", **changes: object) -> RawRecord:
    """A valid rock-salt-like two-atom record, with fields overridden by ``changes``."""
    fields: dict[str, object] = {
        "id": rid,
        "lattice": CUBIC,
        "coords": [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
        "species": ["Na", "Cl"],
        "targets": {"target": 1.5},
    }
    fields.update(changes)
    return RawRecord(**fields)  # type: ignore[arg-type]


def test_valid_record_is_converted() -> None:
    rec = to_record(raw("x1"))
    assert rec.id == "x1"
    assert rec.lattice.shape == (3, 3) and rec.lattice.dtype == np.float64
    assert rec.frac_coords.shape == (2, 3) and rec.frac_coords.dtype == np.float64
    assert rec.species == ("Na", "Cl")
    assert rec.targets == {"target": 1.5}


def test_cartesian_coords_become_fractional() -> None:
    lattice = [[4.0, 0.0, 0.0], [2.0, 3.0, 0.0], [0.0, 1.0, 5.0]]
    frac = np.array([[0.1, 0.2, 0.3], [0.6, 0.5, 0.9]])
    cart = frac @ np.array(lattice)
    rec = to_record(raw(lattice=lattice, coords=cart.tolist(), cartesian=True))
    np.testing.assert_allclose(rec.frac_coords, frac, atol=1e-12)


def test_atomic_numbers_are_accepted_as_species() -> None:
    assert to_record(raw(species=[11, np.int64(17)])).species == ("Na", "Cl")


def test_element_table_is_h_to_og() -> None:
    assert len(ELEMENT_SYMBOLS) == 118
    assert ELEMENT_SYMBOLS[0] == "H" and ELEMENT_SYMBOLS[99] == "Fm" and ELEMENT_SYMBOLS[-1] == "Og"
    assert element_symbol(100) == "Fm"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"lattice": [[1, 0, 0], [0, 1]]}, "lattice: unparseable array"),
        ({"lattice": [[1, 0], [0, 1]]}, "lattice: expected shape (3, 3)"),
        ({"lattice": [[1, 0, 0], [2, 0, 0], [0, 0, 1]]}, "lattice is singular"),
        ({"lattice": [[1e-3, 0, 0], [0, 1e-3, 0], [0, 0, 1e-1]]}, "lattice is singular"),
        ({"coords": [[0, 0, 0], [0.5, 0.5]]}, "coords: unparseable array"),
        ({"coords": [["a", 0, 0], [0, 0, 0]]}, "coords: unparseable array"),
        ({"coords": [[0, 0, np.nan], [0, 0, 0]]}, "coords: contains NaN"),
        ({"coords": [[0, 0, 0]]}, "1 coordinates but 2 species"),
        ({"coords": [], "species": []}, "structure has no atoms"),
        ({"species": ["Na", "Xx"]}, "unknown element 'Xx'"),
        ({"species": ["Na", "Md"]}, "unknown element 'Md'"),
        ({"species": ["Na", 0]}, "unknown element with atomic number 0"),
        ({"species": "NaCl"}, "species: expected a list"),
        ({"targets": {"gap": float("nan")}}, "target 'gap'"),
        ({"targets": {"gap": float("inf")}}, "target 'gap': target is inf"),
        ({"targets": {"gap": "n/a"}}, "target 'gap': target 'n/a' is not a number"),
        ({"id": "  "}, "empty id"),
    ],
)
def test_each_rejection_reason(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        to_record(raw(**changes))
    assert reason in str(info.value)


def test_missing_required_target() -> None:
    with pytest.raises(InvalidRecordError, match="missing target 'target'"):
        to_record(raw(targets={}), required_targets=["target"])


def test_validate_records_counts_and_keeps_good(caplog: pytest.LogCaptureFixture) -> None:
    items = [
        raw("good1"),
        raw("bad-el", species=["Na", "Xx"]),
        raw("good1"),  # duplicate id
        Rejection("file.cif", "cannot parse structure file 'file.cif'"),
        raw("bad-t", targets={"target": float("nan")}),
        raw("good2"),
        raw("singular", lattice=np.zeros((3, 3))),
        raw("mismatch", coords=[[0, 0, 0]]),
    ]
    with caplog.at_level(logging.WARNING):
        result = validate_records(items, "unit-test")
    assert [r.id for r in result.records] == ["good1", "good2"]
    reasons = {r.id: r.reason for r in result.rejected}
    assert len(result.rejected) == 6
    assert reasons["bad-el"] == "unknown element 'Xx'"
    assert reasons["good1"] == "duplicate id"
    assert "target 'target'" in reasons["bad-t"]
    assert "singular" in reasons["singular"]
    assert "1 coordinates but 2 species" in reasons["mismatch"]
    assert result.source == "unit-test"
    assert "unit-test: accepted 2, rejected 6" in caplog.text


def test_valid_record_keeps_an_id_first_used_by_an_invalid_one() -> None:
    """Only accepted records claim an id: the invalid one is named with its own reason."""
    items = [raw("a", species=["Xx", "Na"]), raw("a"), raw("b"), raw("a", targets={"t": 9.0})]
    result = validate_records(items, "dups")
    assert [(r.id, r.targets) for r in result.records] == [
        ("a", {"target": 1.5}),
        ("b", {"target": 1.5}),
    ]
    assert [(r.id, r.reason) for r in result.rejected] == [
        ("a", "unknown element 'Xx'"),
        ("a", "duplicate id"),  # a later record with an accepted id is still a duplicate
    ]


def test_loader_rejection_does_not_claim_its_id() -> None:
    items = [Rejection("x.cif", "cannot parse structure file 'x.cif'"), raw("x.cif")]
    result = validate_records(items, "dups")
    assert [r.id for r in result.records] == ["x.cif"]
    assert [r.reason for r in result.rejected] == ["cannot parse structure file 'x.cif'"]


def test_nan_in_one_of_several_targets_masks_that_property_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    items = [
        raw("nan", targets={"gap": float("nan"), "eform": -1.0, "bulk": 3.0}),
        raw("cells", targets={"gap": "", "eform": "NaN", "bulk": "na"}),  # none known
        raw("none", targets={"gap": None, "eform": "2.5", "bulk": 1.0}),
        raw("inf", targets={"gap": float("inf"), "eform": 1.0, "bulk": 1.0}),  # not unknown: bad
        raw("text", targets={"gap": "abc", "eform": 1.0, "bulk": 1.0}),
    ]
    with caplog.at_level(logging.WARNING):
        result = validate_records(items, "multi", required_targets=["gap", "eform", "bulk"])
    assert [(r.id, r.targets) for r in result.records] == [
        ("nan", {"eform": -1.0, "bulk": 3.0}),
        ("none", {"eform": 2.5, "bulk": 1.0}),
    ]
    reasons = {r.id: r.reason for r in result.rejected}
    assert reasons["cells"] == "no known target (all of gap, eform, bulk are NaN/missing)"
    assert reasons["inf"] == "target 'gap': target is inf (not finite)"
    assert reasons["text"] == "target 'gap': target 'abc' is not a number"
    assert result.masked_targets == 2
    assert result.target_order == ["gap", "eform", "bulk"]
    assert "multi: 2 unknown (NaN/missing) target values masked" in caplog.text


def test_nan_in_a_single_target_record_still_rejects_it_by_id() -> None:
    items = [raw("ok"), raw("bad", targets={"target": float("nan")}), raw("na", targets={})]
    result = validate_records(items, "single", required_targets=["target"])
    assert [r.id for r in result.records] == ["ok"]
    assert [(r.id, r.reason) for r in result.rejected] == [
        ("bad", "target 'target': target is nan (not finite)"),
        ("na", "missing target 'target'"),
    ]


def test_all_rejected_raises_naming_source_and_reasons() -> None:
    items = [raw("x", species=["Xx", "Na"]), raw("y", targets={"target": float("inf")})]
    with pytest.raises(ValueError, match="my-source: no usable structures") as info:
        validate_records(items, "my-source")
    assert "x: unknown element 'Xx'" in str(info.value)
    assert "y: target 'target'" in str(info.value)


def test_empty_input_raises() -> None:
    with pytest.raises(ValueError, match="empty-src: contains no structures"):
        validate_records([], "empty-src")
