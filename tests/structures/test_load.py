"""Tests for the ``load_data`` dispatcher, plus the opt-in check of the paper's real files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matminer.utils.io import store_dataframe_as_json
from pymatgen.core import Lattice, Structure

from tlsearch.structures import load_data
from tlsearch.structures.generate import generate_dataset, write_jarvis_json
from tlsearch.structures.load import is_jarvis_array

PAPER_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "paper"


def nacl(a: float = 5.6) -> Structure:
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_jarvis_json_file(tmp_path: Path) -> None:
    path = write_jarvis_json(generate_dataset(5).records, tmp_path / "d.json.gz")
    assert is_jarvis_array(path)
    result = load_data(path)
    assert len(result.records) == 5 and list(result.records[0].targets) == ["target"]
    assert len(load_data(str(path)).records) == 5


def test_jarvis_json_named_target(tmp_path: Path) -> None:
    entry = {
        "jid": "a",
        "gap": 1.25,
        "atoms": {"lattice_mat": np.eye(3).tolist(), "coords": [[0, 0, 0]], "elements": ["Po"]},
    }
    path = tmp_path / "named.json"
    path.write_text(json.dumps([entry]))
    assert load_data(path, target="gap").records[0].targets == {"target": 1.25}
    with pytest.raises(ValueError, match="missing target 'target'"):
        load_data(path)
    assert load_data(path, require_targets=False).records[0].targets == {}


def test_matminer_dataframe_json(tmp_path: Path) -> None:
    path = tmp_path / "table.json.gz"
    df = pd.DataFrame({"structure": [nacl(), nacl(5.8)], "e_form": [-2.0, -1.9]})
    store_dataframe_as_json(df, str(path), pbar=False)
    assert not is_jarvis_array(path)
    result = load_data(path, target="e_form")
    assert [r.targets["target"] for r in result.records] == [-2.0, -1.9]
    with pytest.raises(ValueError, match="needs target=<column name>"):
        load_data(path)
    assert len(load_data(path, require_targets=False).records) == 2


def test_pickle_and_csv(tmp_path: Path) -> None:
    df = pd.DataFrame({"structure": [nacl(), nacl(5.8)], "y": [1.0, 2.0]})
    df.to_pickle(tmp_path / "t.pkl.gz")
    assert len(load_data(tmp_path / "t.pkl.gz", target="y", allow_pickle=True).records) == 2
    df["structure"] = [json.dumps(s.as_dict()) for s in df["structure"]]
    df.to_csv(tmp_path / "t.csv", index=False)
    assert len(load_data(str(tmp_path / "t.csv"), target="y").records) == 2
    with pytest.raises(ValueError, match="needs target="):
        load_data(tmp_path / "t.csv")


def test_directory(tmp_path: Path) -> None:
    nacl().to(filename=str(tmp_path / "a.cif"))
    (tmp_path / "id_prop.csv").write_text("a.cif,0.5\n")
    assert load_data(tmp_path).records[0].targets == {"target": 0.5}
    (tmp_path / "id_prop.csv").unlink()
    assert load_data(str(tmp_path), require_targets=False).records[0].id == "a.cif"


def test_generated() -> None:
    assert len(load_data("generated:4").records) == 4
    a, b = load_data("generated:3:7"), load_data("generated:3:7")
    assert [r.content_hash() for r in a.records] == [r.content_hash() for r in b.records]
    for bad in ("generated:x", "generated:0", "generated:1:2:3"):
        with pytest.raises(ValueError, match="generated:N"):
            load_data(bad)


def test_matminer_scheme(tmp_path: Path) -> None:
    df = pd.DataFrame({"structure": [nacl(), nacl(5.8)], "poly_total": [5.0, 7.5]})
    store_dataframe_as_json(df, str(tmp_path / "dielectric_constant.json.gz"), pbar=False)
    result = load_data("matminer:DC", data_home=tmp_path)
    assert [r.targets["target"] for r in result.records] == [5.0, 7.5]
    assert [r.id for r in result.records] == ["0", "1"]
    with pytest.raises(ValueError, match="BG, FE, GV, PH, DC, PZ, EBG"):
        load_data("matminer:QQ")
    with pytest.raises(ValueError, match="needs a paper code"):
        load_data("matminer:")


def test_unknown_specs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="(?s)Accepted forms:.*generated:N"):
        load_data("no-such-thing")
    with pytest.raises(ValueError, match="only jarvis:dft_2d"):
        load_data("jarvis:dft_3d")
    with pytest.raises(FileNotFoundError):
        load_data(tmp_path / "missing.json")
    odd = tmp_path / "x.mol"  # (.xyz is extended XYZ, tlsearch.structures.ase_io)
    odd.write_text("1\n\nH 0 0 0\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_data(odd)


FT_CODES = ("bg", "fe", "gv", "ph", "dc", "pz", "ebg")
TEST_SIZES = {"dc": 106, "ebg": 248, "gv": 1100, "ph": 127, "pz": 94}


@pytest.mark.realdata
@pytest.mark.skipif(not PAPER_DATA.is_dir(), reason="../shared/data/paper not present")
@pytest.mark.parametrize("code", FT_CODES)
def test_paper_files_load(code: str) -> None:
    result = load_data(PAPER_DATA / "ft" / code / f"{code}_trial1_100.json.gz")
    assert len(result.records) == 100 and not result.rejected
    targets = np.array([r.targets["target"] for r in result.records])
    assert np.all((targets >= -1.0) & (targets <= 1.0))  # standardised then min-max scaled
    if code in TEST_SIZES:
        test = load_data(PAPER_DATA / "test" / f"{code}_test.json.gz")
        assert len(test.records) == TEST_SIZES[code] and not test.rejected
        assert not {r.id for r in test.records} & {r.id for r in result.records}


@pytest.mark.realdata
@pytest.mark.skipif(not PAPER_DATA.is_dir(), reason="../shared/data/paper not present")
def test_paper_pretraining_files_load() -> None:
    for name in ("bg_1000.json.gz", "fe_1000.json.gz"):
        path = PAPER_DATA / "pt" / name
        with gzip.open(path, "rt") as fh:
            n_raw = len(json.load(fh))
        assert len(load_data(path).records) == n_raw == 1000


def test_jarvis_scheme_dispatch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``jarvis:dft_2d`` reaches load_jarvis_dft_2d (its download path is tested elsewhere)."""
    from tlsearch.structures import matminer_source

    calls: list[tuple[str, object]] = []

    def fake(target: str, data_home: object) -> str:
        calls.append((target, data_home))
        return "result"

    monkeypatch.setattr(matminer_source, "load_jarvis_dft_2d", fake)
    assert load_data("jarvis:dft_2d", data_home=tmp_path) == "result"
    assert load_data("jarvis:dft_2d", target="mbj_bandgap") == "result"
    assert calls == [("optb88vdw_bandgap", tmp_path), ("mbj_bandgap", None)]
