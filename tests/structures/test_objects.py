"""Structures held in memory: pymatgen, ASE, files and records as one LoadResult."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tests.conftest import rocksalt, simple_cubic
from tlsearch.structures.objects import records_from_objects


def _structure(record) -> Structure:
    return Structure(Lattice(record.lattice), list(record.species), record.frac_coords)


def test_every_kind_of_object_gives_the_same_record(tmp_path):
    from ase.build import bulk

    nacl = rocksalt()
    cif = tmp_path / "nacl.cif"
    _structure(nacl).to(filename=str(cif))
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    result = records_from_objects([_structure(nacl), atoms, cif, str(cif), nacl], ids=list("abcde"))
    assert [r.id for r in result.records] == list("abcde")
    for record in result.records:
        assert sorted(record.species) == ["Cl", "Na"]
        assert abs(abs(np.linalg.det(record.lattice)) - abs(np.linalg.det(nacl.lattice))) < 1e-6


def test_default_ids_and_a_single_object():
    nacl, sc = rocksalt(), simple_cubic()
    result = records_from_objects([_structure(nacl), _structure(sc)])
    assert [r.id for r in result.records] == ["0", "1"]
    assert [r.id for r in records_from_objects(nacl).records] == ["nacl"]
    assert len(records_from_objects(_structure(sc)).records) == 1


def test_an_unusable_object_is_named_by_position_id_and_reason():
    bad = Structure(Lattice.cubic(3.0), ["Og"], [[0, 0, 0]])  # Z=118: no atom features
    with pytest.raises(ValueError, match=r"structures\[1\] \(id '1'\): unknown element 'Og'"):
        records_from_objects([_structure(rocksalt()), bad])
    with pytest.raises(ValueError, match=r"structures\[0\] \(id '0'\): a int is not a structure"):
        records_from_objects([3])
    with pytest.raises(ValueError, match=r"\[1\] \(id 'x'\): duplicate id \(also structures\[0\]"):
        records_from_objects([rocksalt(), rocksalt()], ids=["x", "x"])
    with pytest.raises(ValueError, match="2 ids for 1 structures"):
        records_from_objects([rocksalt()], ids=["a", "b"])
    with pytest.raises(ValueError, match="no such structure file"):
        records_from_objects(["missing.cif"])


def test_skip_keeps_the_usable_ones_with_reasons():
    bad = Structure(Lattice.cubic(3.0), ["Og"], [[0, 0, 0]])
    result = records_from_objects([bad, _structure(rocksalt())], errors="skip")
    assert [r.id for r in result.records] == ["1"]
    assert result.rejected[0].id == "0" and "unknown element" in result.rejected[0].reason
