"""Tests for the matminer and jarvis-tools sources, with only the download step replaced.

matminer: ``load_dataset`` runs for real (metadata lookup, path building, file validation,
``load_dataframe_from_json``); the tests either pre-place a correctly named file in
``data_home`` (matminer then skips downloading and hashing) or replace
``_fetch_external_dataset`` (the HTTP fetch) and ``_get_file_sha256_hash``, because a small
stand-in file cannot have the real file's SHA-256 that matminer checks after a download.
jarvis: ``requests.get`` inside ``jarvis.db.figshare`` is replaced by a response streaming a
small zip, so ``data("dft_2d", store_dir=...)`` runs its real store/unzip/parse code.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import jarvis.db.figshare as figshare
import matminer.datasets.utils as mm_utils
import numpy as np
import pandas as pd
import pytest
from matminer.utils.io import store_dataframe_as_json
from pymatgen.core import Lattice, Structure

from tlsearch.structures.matminer_source import (
    PAPER_DATASETS,
    load_jarvis_dft_2d,
    load_matminer,
    matminer_metadata,
    resolve_dataset,
)


def nacl(a: float) -> Structure:
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_paper_datasets_match_matminer_metadata() -> None:
    metadata = matminer_metadata()
    expected = {
        "BG": ("matbench_mp_gap", "gap pbe", 106113),
        "FE": ("matbench_mp_e_form", "e_form", 132752),
        "GV": ("matbench_log_gvrh", "log10(G_VRH)", 10987),
        "PH": ("matbench_phonons", "last phdos peak", 1265),
        "DC": ("dielectric_constant", "poly_total", 1056),
        "PZ": ("piezoelectric_tensor", "eij_max", 941),
        "EBG": ("expt_gap_kingsbury", "expt_gap", 4604),
    }
    assert set(PAPER_DATASETS) == set(expected)
    for code, (name, target, size) in expected.items():
        spec = PAPER_DATASETS[code]
        assert (spec.name, spec.target_column) == (name, target)
        columns = metadata[name]["columns"]
        assert metadata[name]["num_entries"] == size
        assert target in columns
        assert spec.structure_column is None or spec.structure_column in columns
    assert "average of the eigenvalues" in metadata["dielectric_constant"]["columns"]["poly_total"]
    assert "structure" not in metadata["expt_gap_kingsbury"]["columns"]
    assert PAPER_DATASETS["EBG"].mpid_column in metadata["expt_gap_kingsbury"]["columns"]


def test_resolve_dataset_errors() -> None:
    assert resolve_dataset("dc").target_column == "poly_total"
    assert resolve_dataset("matbench_phonons").target_column == "last phdos peak"
    assert resolve_dataset("DC", target="poly_electronic").target_column == "poly_electronic"
    with pytest.raises(ValueError, match="BG, FE, GV, PH, DC, PZ, EBG"):
        resolve_dataset("XYZ")
    with pytest.raises(ValueError, match="not one of the paper's; pass target="):
        resolve_dataset("matbench_perovskites")
    with pytest.raises(ValueError, match="has no column 'nope'"):
        resolve_dataset("DC", target="nope")
    assert resolve_dataset("matbench_perovskites", target="e_form").structure_column == "structure"


def write_phonons(path: Path) -> None:
    df = pd.DataFrame(
        {"structure": [nacl(5.5), nacl(5.7), nacl(5.9)], "last phdos peak": [250.0, np.nan, 300.0]}
    )
    store_dataframe_as_json(df, str(path), pbar=False)


def test_load_from_preplaced_file(tmp_path: Path) -> None:
    write_phonons(tmp_path / "matbench_phonons.json.gz")
    result = load_matminer("PH", data_home=tmp_path, download_if_missing=False)
    assert [r.id for r in result.records] == ["0", "2"]
    assert [r.targets for r in result.records] == [{"target": 250.0}, {"target": 300.0}]
    assert result.rejected[0].reason == "missing target 'target'"
    assert result.source == "matminer:matbench_phonons"


def test_load_with_download_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source.json.gz"
    write_phonons(source)
    fetched: list[str] = []

    def fake_fetch(url: str, file_path: str) -> None:
        fetched.append(url)
        shutil.copy(source, file_path)

    expected_hash = matminer_metadata()["matbench_phonons"]["hash"]
    monkeypatch.setattr(mm_utils, "_fetch_external_dataset", fake_fetch)
    monkeypatch.setattr(mm_utils, "_get_file_sha256_hash", lambda path: expected_hash)
    home = tmp_path / "home"
    result = load_matminer("matbench_phonons", data_home=home)
    assert fetched == ["https://ml.materialsproject.org/projects/matbench_phonons.json.gz"]
    assert (home / "matbench_phonons.json.gz").is_file()
    assert len(result.records) == 2


def test_no_download_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="download_if_missing set to False"):
        load_matminer("PZ", data_home=tmp_path, download_if_missing=False)


def test_ebg_needs_structures(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no structures.*structures="):
        load_matminer("EBG", data_home=tmp_path, download_if_missing=False)
    df = pd.DataFrame(
        {
            "formula": ["NaCl", "KCl", "LiF"],
            "expt_gap": [8.5, 8.4, 13.6],
            "likely_mpid": ["mp-22862", "mp-23193", None],
        }
    )
    store_dataframe_as_json(df, str(tmp_path / "expt_gap_kingsbury.json.gz"), pbar=False)
    structures = {"mp-22862": nacl(5.6), "mp-23193": nacl(6.3).as_dict()}
    result = load_matminer("EBG", data_home=tmp_path, structures=structures)
    assert [r.targets["target"] for r in result.records] == [8.5, 8.4]
    assert result.rejected[0].id == "2" and "missing structure" in result.rejected[0].reason


class FakeResponse:
    """Just enough of ``requests.Response`` for ``get_request_data``."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.headers = {"content-length": str(len(content))}

    def iter_content(self, block_size: int) -> Iterator[bytes]:
        for start in range(0, len(self.content), block_size):
            yield self.content[start : start + block_size]


def dft_2d_zip(entries: list[dict[str, object]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(figshare.get_db_info()["dft_2d"][1], json.dumps(entries))
    return buffer.getvalue()


def test_jarvis_dft_2d_with_download_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    atoms = {
        "lattice_mat": [[3.2, 0, 0], [-1.6, 2.77, 0], [0, 0, 20.0]],
        "coords": [[0, 0, 0.5], [1 / 3, 2 / 3, 0.55]],
        "elements": ["Mo", "S"],
        "cartesian": False,
    }
    entries = [
        {"jid": "JVASP-1", "optb88vdw_bandgap": 1.6, "atoms": atoms},
        {"jid": "JVASP-2", "optb88vdw_bandgap": "na", "atoms": atoms},
        {"jid": "JVASP-3", "optb88vdw_bandgap": 0.0, "atoms": atoms},
    ]
    urls: list[str] = []

    def fake_get(url: str, stream: bool = False) -> FakeResponse:
        urls.append(url)
        return FakeResponse(dft_2d_zip(entries))

    monkeypatch.setattr(figshare.requests, "get", fake_get)
    result = load_jarvis_dft_2d(data_home=tmp_path / "jarvis")
    assert urls == [figshare.get_db_info()["dft_2d"][0]]
    assert [r.id for r in result.records] == ["JVASP-1", "JVASP-3"]
    assert result.records[0].targets == {"target": 1.6}
    assert "'na' is not a number" in result.rejected[0].reason
    again = load_jarvis_dft_2d(data_home=tmp_path / "jarvis")  # cached zip, no new download
    assert len(urls) == 1 and len(again.records) == 2
