"""Tests for the DataFrame loader (pymatgen structures, dicts, strings; pkl/json/csv files)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matminer.utils.io import store_dataframe_as_json
from pymatgen.core import Lattice, Structure

from tlsearch.structures.dataframe import (
    PickleRefusedError,
    load_dataframe_file,
    read_dataframe,
    records_from_dataframe,
    target_columns,
)
from tlsearch.structures.load import load_data
from tlsearch.structures.safe_json import UnsafeObjectError


def cscl(a: float = 4.1) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def jarvis_atoms() -> dict[str, object]:
    return {
        "lattice_mat": [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]],
        "coords": [[0, 0, 0]],
        "elements": ["Po"],
        "cartesian": False,
    }


def mixed_frame() -> pd.DataFrame:
    disordered = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    cells = [
        cscl(),
        cscl(4.2).as_dict(),
        jarvis_atoms(),
        None,
        "not a structure",
        disordered,
        42,
        cscl(4.3),
        cscl(4.4),
    ]
    gaps = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, np.nan, np.inf]
    return pd.DataFrame(
        {"structure": cells, "gap": gaps, "mpid": [f"mp-{i}" for i in range(len(cells))]},
        index=pd.RangeIndex(10, 10 + len(cells)),
    )


def test_cell_kinds_and_rejections() -> None:
    result = records_from_dataframe(mixed_frame(), targets="gap", source="frame")
    assert [r.id for r in result.records] == ["10", "11", "12"]
    assert result.records[1].lattice[0, 0] == pytest.approx(4.2)
    assert result.records[2].species == ("Po",)
    assert all(list(r.targets) == ["target"] for r in result.records)
    reasons = {r.id: r.reason for r in result.rejected}
    assert reasons["13"] == "missing structure in column 'structure'"
    assert reasons["14"].startswith("unparseable structure")
    assert reasons["15"].startswith("disordered structure")
    assert reasons["16"] == "structure cell is a int, not a structure"
    assert reasons["17"] == "missing target 'target'"
    assert reasons["18"] == "target 'target': target is inf (not finite)"


def test_id_column_and_named_targets() -> None:
    df = mixed_frame().iloc[:3]
    result = records_from_dataframe(df, targets=["gap"], id_col="mpid")
    assert [r.id for r in result.records] == ["mp-0", "mp-1", "mp-2"]
    assert result.records[0].targets == {"gap": 1.0}
    renamed = records_from_dataframe(df, targets={"gap": "band_gap"})
    assert renamed.records[0].targets == {"band_gap": 1.0}
    assert target_columns(None) == {}


def test_nan_in_one_of_several_target_columns_masks_that_column_only() -> None:
    df = pd.DataFrame(
        {
            "structure": [cscl(4.1), cscl(4.2), cscl(4.3)],
            "gap": [1.0, np.nan, None],
            "ef": [np.nan, -2.0, np.nan],
        }
    )
    result = records_from_dataframe(df, targets=["gap", "ef"], source="frame")
    assert [(r.id, r.targets) for r in result.records] == [("0", {"gap": 1.0}), ("1", {"ef": -2.0})]
    assert [(r.id, r.reason) for r in result.rejected] == [
        ("2", "no known target (all of gap, ef are NaN/missing)")
    ]
    assert result.masked_targets == 2
    optional = records_from_dataframe(df, targets=["gap", "ef"], require_targets=False)
    assert [r.targets for r in optional.records] == [{"gap": 1.0}, {"ef": -2.0}, {}]


def test_optional_targets() -> None:
    df = pd.DataFrame({"structure": [cscl(), cscl(4.3)], "gap": [1.0, None]})
    result = records_from_dataframe(df, targets="gap", require_targets=False)
    assert [r.targets for r in result.records] == [{"target": 1.0}, {}]


def test_missing_column_lists_columns() -> None:
    with pytest.raises(ValueError, match=r"no column 'e_form'; columns are \['structure', 'gap'"):
        records_from_dataframe(mixed_frame(), targets="e_form")
    with pytest.raises(ValueError, match="no column 'struct'"):
        records_from_dataframe(mixed_frame(), structure_col="struct")


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({"structure": [cscl(), cscl(4.5)], "e_form": [-1.0, -0.5]})


@pytest.mark.parametrize("name", ["t.pkl", "t.pkl.gz"])
def test_pickle_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    small_frame().to_pickle(path)
    result = load_dataframe_file(path, targets="e_form", allow_pickle=True)
    assert [r.targets["target"] for r in result.records] == [-1.0, -0.5]
    assert result.source == str(path)


class _RunsCode:
    """Unpickling this calls ``Path.touch`` on a marker file: what a hostile pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_pickle_is_not_read_without_opt_in(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(PickleRefusedError, match=r"evil\.pkl: a pickle file runs any code"):
        read_dataframe(path)
    with pytest.raises(PickleRefusedError, match="--allow-pickle"):
        load_data(str(path), target="y")
    assert not marker.exists()
    with pytest.raises(ValueError, match="expected a pandas DataFrame"):
        read_dataframe(path, allow_pickle=True)  # the opt-in reads it: the user trusted it
    assert marker.exists()


def test_matminer_json_naming_another_class_is_refused_before_decoding(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.json"
    store_dataframe_as_json(small_frame(), str(path), pbar=False)
    document = json.loads(path.read_text())
    # a record whose site properties name a class outside the allow-list (monty would import
    # the module and call the class's from_dict)
    site = document["data"][1][0]["sites"][0]
    site["properties"] = {"x": {"@module": "pathlib", "@class": "Path", "p": str(marker)}}
    path.write_text(json.dumps(document))
    where = r"record 1 \(row 1\), column 'structure'.*pathlib\.Path"
    with pytest.raises(UnsafeObjectError, match=where):
        read_dataframe(path)
    hostile = {"@module": "os", "@callable": "system"}
    callable_doc = {"columns": ["s"], "index": [0], "data": [[hostile]]}
    path.write_text(json.dumps(callable_doc))
    with pytest.raises(UnsafeObjectError, match="os.system"):
        read_dataframe(path)


EMPTY_TABLE = '{"columns": ["structure"], "index": [], "data": []}'


@pytest.mark.parametrize("text", ["", "[]", "{}", EMPTY_TABLE])
def test_an_empty_json_says_no_records(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"no records in .*empty\.json"):
        load_data(str(path), target="y")


@pytest.mark.parametrize("name", ["t.json", "t.json.gz"])
def test_matminer_json_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    store_dataframe_as_json(small_frame(), str(path), pbar=False)
    result = load_dataframe_file(path, targets="e_form")
    assert [r.id for r in result.records] == ["0", "1"]
    assert result.records[1].lattice[0, 0] == pytest.approx(4.5)


def test_csv_with_structure_strings(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    cells = [json.dumps(cscl().as_dict()), cscl(4.6).to(fmt="cif"), cscl(4.7).to(fmt="poscar")]
    pd.DataFrame({"structure": cells, "y": [1.0, 2.0, 3.0]}).to_csv(path, index=False)
    result = load_dataframe_file(path, targets="y")
    assert [round(r.lattice[0, 0], 3) for r in result.records] == [4.1, 4.6, 4.7]


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_dataframe(tmp_path / "none.pkl")
    odd = tmp_path / "t.xyz"
    odd.write_text("x")
    with pytest.raises(ValueError, match="unsupported table format"):
        read_dataframe(odd)
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot read a DataFrame"):
        read_dataframe(broken, allow_pickle=True)
    series = tmp_path / "series.pkl"
    pd.Series([1, 2]).to_pickle(series)
    with pytest.raises(ValueError, match="expected a pandas DataFrame"):
        read_dataframe(series, allow_pickle=True)
