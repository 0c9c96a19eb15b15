"""Tests for the ALIGNN id_prop.csv folder loader (structure files parsed by pymatgen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tlsearch.structures.id_prop import load_id_prop, target_names


def rocksalt(a: float = 5.6) -> Structure:
    """Conventional 8-atom rock-salt cell."""
    fcc = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    coords = np.vstack([fcc, (fcc + [0.5, 0, 0]) % 1.0])
    return Structure(Lattice.cubic(a), ["Na"] * 4 + ["Cl"] * 4, coords)


def make_folder(tmp_path: Path, rows: list[str]) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    rocksalt().to(filename=str(folder / "nacl.cif"))
    Structure(Lattice.cubic(3.0), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3]).to(
        filename=str(folder / "POSCAR-cscl")
    )
    Structure(Lattice.cubic(4.0), ["Si"], [[0, 0, 0]]).to(filename=str(folder / "si.vasp"))
    (folder / "garbage.cif").write_text("this is not a crystal structure\n")
    (folder / "noext").write_text((folder / "nacl.cif").read_text())
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_loads_good_files_and_names_bad_ones(tmp_path: Path) -> None:
    rows = [
        "nacl.cif,1.5",
        "POSCAR-cscl,2.5",
        "si.vasp,-0.5",
        "garbage.cif,1.0",
        "absent.cif,1.0",
        "noext,3.0",
        "nacl.cif,9.0",
        "si.vasp,nan",
    ]
    result = load_id_prop(make_folder(tmp_path, rows))
    assert [r.id for r in result.records] == ["nacl.cif", "POSCAR-cscl", "si.vasp", "noext"]
    nacl = result.records[0]
    assert nacl.num_atoms == 8 and sorted(set(nacl.species)) == ["Cl", "Na"]
    np.testing.assert_allclose(np.abs(np.linalg.det(nacl.lattice)), 5.6**3)
    assert result.records[1].targets == {"target": 2.5}
    reasons = [(r.id, r.reason) for r in result.rejected]
    assert reasons[0][0] == "garbage.cif"
    assert reasons[0][1].startswith("cannot parse structure file 'garbage.cif'")
    assert (
        reasons[1][0] == "absent.cif" and "structure file 'absent.cif' not found" in reasons[1][1]
    )
    assert reasons[2] == ("nacl.cif", "duplicate id")
    assert reasons[3][0] == "si.vasp"  # second si.vasp row: a duplicate too
    assert len(result.rejected) == 4


def test_nan_target_is_named(tmp_path: Path) -> None:
    result = load_id_prop(make_folder(tmp_path, ["nacl.cif,1.0", "si.vasp,inf"]))
    assert result.rejected[0].reason == "target 'target': target is inf (not finite)"


def test_multiple_target_columns(tmp_path: Path) -> None:
    assert target_names(1) == ["target"]
    assert target_names(3) == ["target_0", "target_1", "target_2"]
    folder = make_folder(tmp_path, ["nacl.cif,1.0,2.0", "si.vasp,3.0"])
    result = load_id_prop(folder)
    assert result.records[0].targets == {"target_0": 1.0, "target_1": 2.0}
    assert "expected 2 target(s), got 1" in result.rejected[0].reason
    named = load_id_prop(folder, names=["gap", "ef"])
    assert named.records[0].targets == {"gap": 1.0, "ef": 2.0}


def test_nan_cell_of_a_multi_target_row_masks_that_target_only(tmp_path: Path) -> None:
    rows = ["nacl.cif,nan,2.0", "si.vasp,3.0,", "POSCAR-cscl,NaN,na"]
    result = load_id_prop(make_folder(tmp_path, rows))
    assert [(r.id, r.targets) for r in result.records] == [
        ("nacl.cif", {"target_1": 2.0}),
        ("si.vasp", {"target_0": 3.0}),
    ]
    assert [(r.id, r.reason) for r in result.rejected] == [
        ("POSCAR-cscl", "no known target (all of target_0, target_1 are NaN/missing)")
    ]
    assert result.masked_targets == 2
    assert result.target_order == ["target_0", "target_1"]


def test_bad_row_does_not_claim_the_id_of_a_later_good_row(tmp_path: Path) -> None:
    rows = ["si.vasp,x", "nacl.cif,1.0,2.0", "nacl.cif,3.0", "si.vasp,1.0", "nacl.cif,4.0"]
    result = load_id_prop(make_folder(tmp_path, rows))
    assert [(r.id, r.targets) for r in result.records] == [
        ("nacl.cif", {"target": 3.0}),
        ("si.vasp", {"target": 1.0}),
    ]
    assert [(r.id, r.reason) for r in result.rejected] == [
        ("si.vasp", "target 'target': target 'x' is not a number"),
        ("nacl.cif", "id_prop.csv line 2: expected 1 target(s), got 2"),
        ("nacl.cif", "duplicate id"),
    ]


def test_prediction_folder_without_id_prop(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, ["nacl.cif,1.0"])
    (folder / "id_prop.csv").unlink()
    with pytest.raises(ValueError, match="no id_prop.csv"):
        load_id_prop(folder)
    result = load_id_prop(folder, require_targets=False)
    assert sorted(r.id for r in result.records) == ["POSCAR-cscl", "nacl.cif", "si.vasp"]
    assert all(r.targets == {} for r in result.records)
    assert [r.id for r in result.rejected] == ["garbage.cif"]


def test_missing_folder_and_all_bad(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_id_prop(tmp_path / "nope")
    folder = make_folder(tmp_path, ["garbage.cif,1.0"])
    with pytest.raises(ValueError, match="no usable structures.*garbage.cif"):
        load_id_prop(folder)


def test_rows_cannot_name_files_outside_the_folder(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, ["nacl.cif,1.0", "../outside.cif,2.0", "/etc/passwd,3.0"])
    (tmp_path / "outside.cif").write_text((folder / "nacl.cif").read_text())
    (folder / "link.cif").symlink_to(tmp_path / "outside.cif")
    with (folder / "id_prop.csv").open("a") as fh:
        fh.write("link.cif,4.0\n")
    result = load_id_prop(folder)
    assert [r.id for r in result.records] == ["nacl.cif", "link.cif"]  # the owner's own link
    reasons = {r.id: r.reason for r in result.rejected}
    assert set(reasons) == {"../outside.cif", "/etc/passwd"}
    assert all("is outside" in why and str(folder) in why for why in reasons.values())
