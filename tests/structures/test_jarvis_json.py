"""Tests for the jarvis-tools dataset-array JSON loader."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tlsearch.structures.jarvis_json import load_jarvis_json, read_json


def atoms(elements: list[str] | None = None, **changes: object) -> dict[str, object]:
    """A jarvis atoms dict of a two-atom cubic cell."""
    out: dict[str, object] = {
        "lattice_mat": [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]],
        "coords": [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
        "elements": elements or ["Cs", "Cl"],
        "cartesian": False,
        "abc": [4.0, 4.0, 4.0],
        "angles": [90.0, 90.0, 90.0],
        "props": ["", ""],
    }
    out.update(changes)
    return out


def write(path: Path, entries: list[object]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        json.dump(entries, fh)
    return path


def mixed_entries() -> list[object]:
    return [
        {"jid": 1, "target": 0.5, "atoms": atoms()},
        {"jid": 2, "target": 0.1, "atoms": atoms(["Cs", "Qq"])},
        {"jid": 1, "target": 0.7, "atoms": atoms()},
        {"jid": 3, "target": float("nan"), "atoms": atoms()},
        {"jid": 4, "target": 0.2, "atoms": atoms(coords=[[0, 0, 0]])},
        {"jid": 5, "target": 0.3, "atoms": atoms(lattice_mat=[[1, 0, 0], [1, 0, 0], [0, 0, 1]])},
        {"jid": 6, "atoms": atoms()},
        {"jid": 7, "target": 0.4},
        "not a record",
        {"jid": 8, "target": -0.9, "atoms": atoms(["Na", "Cl"])},
    ]


@pytest.mark.parametrize("name", ["data.json", "data.json.gz"])
def test_loads_plain_and_gzip(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, mixed_entries())
    result = load_jarvis_json(path)
    assert [r.id for r in result.records] == ["1", "8"]
    assert result.records[1].species == ("Na", "Cl")
    assert result.records[1].targets == {"target": -0.9}
    reasons = {r.id: r.reason for r in result.rejected}
    assert reasons["2"] == "unknown element 'Qq'"
    assert reasons["1"] == "duplicate id"
    assert reasons["3"] == "target 'target': target is nan (not finite)"
    assert reasons["4"] == "1 coordinates but 2 species"
    assert reasons["5"].startswith("lattice is singular")
    assert reasons["6"] == "missing target 'target'"
    assert reasons["7"] == "record has no 'atoms'"
    assert reasons["row 8"] == "record is not an object (got str)"
    assert len(result.rejected) == 8
    assert result.source == str(path)


def test_cartesian_atoms(tmp_path: Path) -> None:
    lattice = [[4.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 6.0]]
    entry = {
        "jid": "c",
        "target": 1.0,
        "atoms": atoms(lattice_mat=lattice, coords=[[0, 0, 0], [2.0, 2.5, 3.0]], cartesian=True),
    }
    rec = load_jarvis_json(write(tmp_path / "c.json", [entry])).records[0]
    np.testing.assert_allclose(rec.frac_coords[1], [0.5, 0.5, 0.5])


def test_id_fallbacks(tmp_path: Path) -> None:
    entries = [
        {"id": "abc", "target": 1.0, "atoms": atoms()},
        {"target": 2.0, "atoms": atoms()},
        {"my_id": "m", "target": 3.0, "atoms": atoms()},
    ]
    path = write(tmp_path / "ids.json", entries)
    assert [r.id for r in load_jarvis_json(path).records] == ["abc", "1", "2"]
    assert [r.id for r in load_jarvis_json(path, id_key="my_id").records] == ["abc", "1", "m"]


def test_named_targets_and_optional_targets(tmp_path: Path) -> None:
    entries = [
        {"jid": "a", "gap": 1.0, "ef": -2.0, "atoms": atoms()},
        {"jid": "b", "gap": 0.5, "atoms": atoms()},
    ]
    path = write(tmp_path / "multi.json", entries)
    strict = load_jarvis_json(path, target_keys=["gap", "ef"])
    assert [r.id for r in strict.records] == ["a"]
    assert strict.rejected[0].reason == "missing target 'ef'"
    lenient = load_jarvis_json(path, target_keys=["gap", "ef"], require_targets=False)
    assert [r.targets for r in lenient.records] == [{"gap": 1.0, "ef": -2.0}, {"gap": 0.5}]
    renamed = load_jarvis_json(path, target_keys={"gap": "target"})
    assert [r.targets for r in renamed.records] == [{"target": 1.0}, {"target": 0.5}]


def test_non_numeric_target_is_rejected_with_name(tmp_path: Path) -> None:
    entries = [
        {"jid": "a", "gap": "na", "atoms": atoms()},
        {"jid": "b", "gap": 1.0, "atoms": atoms()},
    ]
    result = load_jarvis_json(write(tmp_path / "na.json", entries), target_keys=["gap"])
    assert result.rejected[0].reason == "target 'gap': target 'na' is not a number"


def test_all_rejected_raises_with_reasons(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", [{"jid": 1, "target": 0.0, "atoms": atoms(["Zz", "O"])}])
    with pytest.raises(ValueError, match="no usable structures.*unknown element 'Zz'"):
        load_jarvis_json(path)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_jarvis_json(tmp_path / "missing.json")
    bad = tmp_path / "broken.json"
    bad.write_text("[{not json")
    with pytest.raises(ValueError, match="not a readable JSON file"):
        read_json(bad)
    obj = write(tmp_path / "obj.json", {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a JSON list of records"):
        load_jarvis_json(obj)
