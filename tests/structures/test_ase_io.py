"""ASE in and out: Atoms objects, ASE databases and extended XYZ files through load_data."""

from __future__ import annotations

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from tests.conftest import rocksalt
from tlsearch.structures import load_data
from tlsearch.structures.ase_io import raw_from_ase, to_atoms
from tlsearch.structures.validate import InvalidRecordError, to_record


def _crystals() -> list[Atoms]:
    out = []
    for i, (formula, kind, a) in enumerate(
        [("NaCl", "rocksalt", 5.64), ("Si", "diamond", 5.43), ("Cu", "fcc", 3.61)]
    ):
        atoms = bulk(formula, kind, a=a)
        atoms.info["band_gap"] = 0.5 * i
        atoms.info["name"] = f"{formula}-{kind}"
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 - i)
        out.append(atoms)
    return out


def test_atoms_become_the_same_record_as_the_structure_it_holds():
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.positions += 0.1  # off the origin: Cartesian -> fractional is exercised
    record = to_record(raw_from_ase("x", atoms, {"target": 1.0}))
    assert record.species == ("Na", "Cl")
    np.testing.assert_allclose(record.lattice, atoms.cell.array)
    np.testing.assert_allclose(record.frac_coords, atoms.get_scaled_positions(wrap=False))
    back = to_atoms(record)
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-12)
    assert back.info == {"target": 1.0, "id": "x"} and back.pbc.all()


def test_a_molecule_without_a_cell_is_refused_with_the_reason():
    with pytest.raises(InvalidRecordError, match="no 3D cell.*pbc=FFF"):
        raw_from_ase("h2o", Atoms("H2O", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0]]), {})


def test_extxyz_reads_info_and_calculator_properties(tmp_path):
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, _crystals(), format="extxyz")
    gaps = load_data(str(path), target="band_gap")
    assert [r.id for r in gaps.records] == ["0", "1", "2"]
    assert [r.targets["target"] for r in gaps.records] == [0.0, 0.5, 1.0]
    energies = load_data(path, target="energy")  # a Path works too; energy lives in calc
    assert [r.targets["target"] for r in energies.records] == [-1.0, -2.0, -3.0]
    assert len(load_data(path, require_targets=False).records) == 3


def test_ase_database_rows_with_a_property_key(tmp_path):
    path = tmp_path / "data.db"
    with ase.db.connect(path) as db:
        for atoms in _crystals():
            db.write(atoms, band_gap=atoms.info["band_gap"], name=atoms.info["name"])
    result = load_data(str(path), target="band_gap")
    assert [r.id for r in result.records] == ["1", "2", "3"]
    assert [r.targets["target"] for r in result.records] == [0.0, 0.5, 1.0]
    assert result.records[1].species == ("Si", "Si")
    energies = load_data(str(path), target="energy")
    assert [r.targets["target"] for r in energies.records] == [-1.0, -2.0, -3.0]

    from tlsearch.structures.ase_io import load_ase_db

    named = load_ase_db(path, "band_gap", id_key="name", selection="band_gap>0")
    assert [r.id for r in named.records] == ["Si-diamond", "Cu-fcc"]


def test_bad_records_are_named_with_their_key_and_the_rest_kept(tmp_path):
    path = tmp_path / "mixed.db"
    with ase.db.connect(path) as db:
        db.write(bulk("Si", "diamond", a=5.43), band_gap=1.1)
        db.write(bulk("Cu", "fcc", a=3.61))  # no band_gap
        db.write(bulk("Cu", "fcc", a=3.61), band_gap="n/a")
        db.write(Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]]), band_gap=9.0)
    result = load_data(str(path), target="band_gap")
    assert [r.id for r in result.records] == ["1"]
    reasons = {r.id: r.reason for r in result.rejected}
    assert "no property 'band_gap'" in reasons["2"]
    assert "property 'band_gap'" in reasons["3"] and "not a number" in reasons["3"]
    assert "no 3D cell" in reasons["4"]


def test_a_missing_target_key_lists_the_keys_there_are(tmp_path):
    path = tmp_path / "frames.xyz"
    ase.io.write(path, _crystals(), format="extxyz")
    with pytest.raises(ValueError, match=r"needs target=<property key>.*band_gap.*energy"):
        load_data(str(path))
    with pytest.raises(ValueError, match="no usable structures.*no property 'gap'.*band_gap"):
        load_data(str(path), target="gap")
    db = tmp_path / "empty.db"
    db.write_text("not sqlite")
    with pytest.raises(ValueError, match="cannot read an ASE database"):
        load_data(str(db), target="x")


def test_single_cif_and_poscar_files_load_for_prediction(tmp_path):
    from pymatgen.core import Lattice, Structure

    record = rocksalt()
    structure = Structure(Lattice(record.lattice), list(record.species), record.frac_coords)
    structure.to(filename=str(tmp_path / "nacl.cif"))
    structure.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    for name in ("nacl.cif", "POSCAR"):
        result = load_data(str(tmp_path / name), require_targets=False)
        assert [r.id for r in result.records] == [name]
        loaded = result.records[0]
        assert sorted(loaded.species) == ["Cl", "Na"]
        volume = abs(np.linalg.det(loaded.lattice))
        assert volume == pytest.approx(abs(np.linalg.det(record.lattice)), rel=1e-5)
    with pytest.raises(ValueError, match="one structure file has no target.*id_prop.csv"):
        load_data(str(tmp_path / "nacl.cif"))
