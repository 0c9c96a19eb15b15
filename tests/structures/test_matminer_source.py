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

import gzip
import io
import json
import re
import shutil
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import jarvis.db.figshare as figshare
import matminer.datasets.utils as mm_utils
import numpy as np
import pandas as pd
import pytest
import requests
from matminer.utils.io import store_dataframe_as_json
from pymatgen.core import Lattice, Structure

from tlsearch.structures import load_data, mp_structures
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


EBG_ROWS = pd.DataFrame(
    {
        "formula": ["NaCl", "KCl", "LiF", "CsCl"],
        "expt_gap": [8.5, 8.4, 13.6, 8.3],
        "likely_mpid": ["mp-22862", "mp-23193", None, "mp-99999"],
    }
)


def write_ebg(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    store_dataframe_as_json(EBG_ROWS, str(home / "expt_gap_kingsbury.json.gz"), pbar=False)


def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(url: str, file_path: str) -> None:
        raise AssertionError(f"downloaded {url}")

    monkeypatch.setattr(mm_utils, "_fetch_external_dataset", fail)


def test_ebg_refused_without_mp_api_before_any_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_download(monkeypatch)
    monkeypatch.setattr(mp_structures, "mp_api_available", lambda: False)
    with pytest.raises(ValueError, match="mp-api is not installed") as info:
        load_matminer("EBG", data_home=tmp_path)
    message = str(info.value)
    for part in ("pip install mp-api", "MP_API_KEY", "ft/ebg/ebg_trial*_*.json.gz"):
        assert part in message
    assert "test/ebg_test.json.gz" in message and "--offline" in message
    monkeypatch.setattr(mp_structures, "mp_api_available", lambda: True)
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MP_API_KEY is not set.*ebg_trial"):
        load_matminer("EBG", data_home=tmp_path)


def test_ebg_with_structures_given(tmp_path: Path) -> None:
    write_ebg(tmp_path)
    structures = {"mp-22862": nacl(5.6), "mp-23193": nacl(6.3).as_dict()}
    result = load_matminer("EBG", data_home=tmp_path, structures=structures)
    assert [r.targets["target"] for r in result.records] == [8.5, 8.4]
    assert [(r.id, r.reason) for r in result.rejected] == [
        ("2", "no mp-id in column 'likely_mpid'"),
        ("3", "mp-99999: no structure from structures="),
    ]


class MPID:
    """Like emmet's ``MPID``: an object whose text is the id."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


class FakeMPRester:
    """``mp_api.client.MPRester`` answering ``materials.summary.search`` from a dict."""

    known = {"mp-22862": nacl(5.6), "mp-23193": nacl(6.3)}
    calls: list[list[str]] = []
    keys: list[str] = []
    fail_on_call: int | None = None

    def __init__(self, api_key: str | None = None) -> None:
        FakeMPRester.keys.append(api_key)
        self.materials = self
        self.summary = self

    def __enter__(self) -> FakeMPRester:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def search(self, material_ids: list[str], fields: list[str]) -> list[object]:
        assert fields == ["material_id", "structure"]
        FakeMPRester.calls.append(list(material_ids))
        if FakeMPRester.fail_on_call == len(FakeMPRester.calls):
            raise RuntimeError("MPRestError: 403 forbidden")
        return [
            SimpleNamespace(material_id=MPID(m), structure=s)
            for m, s in self.known.items()
            if m in material_ids
        ]


@pytest.fixture
def fake_mp(monkeypatch: pytest.MonkeyPatch) -> type[FakeMPRester]:
    client = types.ModuleType("mp_api.client")
    client.MPRester = FakeMPRester  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mp_api", types.ModuleType("mp_api"))
    monkeypatch.setitem(sys.modules, "mp_api.client", client)
    monkeypatch.setattr(mp_structures, "mp_api_available", lambda: True)
    monkeypatch.setenv("MP_API_KEY", "secret-key")
    monkeypatch.setattr(FakeMPRester, "calls", [])
    monkeypatch.setattr(FakeMPRester, "keys", [])
    return FakeMPRester


def test_ebg_structures_fetched_once_from_mp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mp: type[FakeMPRester]
) -> None:
    write_ebg(tmp_path)
    monkeypatch.setattr(mp_structures, "BATCH_SIZE", 2)
    result = load_matminer("EBG", data_home=tmp_path, download_if_missing=False)
    assert fake_mp.calls == [["mp-22862", "mp-23193"], ["mp-99999"]]
    assert fake_mp.keys == ["secret-key"]
    assert [(r.id, r.targets["target"]) for r in result.records] == [("0", 8.5), ("1", 8.4)]
    assert result.records[1].lattice[0, 0] == pytest.approx(6.3)
    assert [(r.id, r.reason) for r in result.rejected] == [
        ("2", "no mp-id in column 'likely_mpid'"),
        ("3", "mp-99999: no structure from the Materials Project"),
    ]
    assert (tmp_path / mp_structures.CACHE_NAME).is_file()
    # cached: no new request, and mp-api is no longer needed
    monkeypatch.setattr(mp_structures, "mp_api_available", lambda: False)
    again = load_matminer("EBG", data_home=tmp_path, download_if_missing=False)
    assert len(fake_mp.calls) == 2
    assert [r.id for r in again.records] == ["0", "1"] and len(again.rejected) == 2


def test_ebg_fetch_failure_keeps_finished_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mp: type[FakeMPRester]
) -> None:
    write_ebg(tmp_path)
    monkeypatch.setattr(mp_structures, "BATCH_SIZE", 1)
    monkeypatch.setattr(fake_mp, "fail_on_call", 2)
    with pytest.raises(ValueError, match="Materials Project request failed.*403.*ebg_trial"):
        load_matminer("EBG", data_home=tmp_path)
    structures, not_found = mp_structures.read_cache(tmp_path)
    assert list(structures) == ["mp-22862"] and not not_found
    monkeypatch.setattr(fake_mp, "fail_on_call", None)
    result = load_matminer("EBG", data_home=tmp_path)
    assert fake_mp.calls[2:] == [["mp-23193"], ["mp-99999"]]  # only what was missing
    assert len(result.records) == 2


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


D2_ATOMS = {
    "lattice_mat": [[3.2, 0, 0], [-1.6, 2.77, 0], [0, 0, 20.0]],
    "coords": [[0, 0, 0.5], [1 / 3, 2 / 3, 0.55]],
    "elements": ["Mo", "S"],
    "cartesian": False,
}
D2_ENTRIES = [
    {"jid": "JVASP-1", "optb88vdw_bandgap": 1.6, "atoms": D2_ATOMS},
    {"jid": "JVASP-2", "optb88vdw_bandgap": "na", "atoms": D2_ATOMS},
    {"jid": "JVASP-3", "optb88vdw_bandgap": 0.0, "atoms": D2_ATOMS},
]
D2_NAME = figshare.get_db_info()["dft_2d"][1]


def test_jarvis_dft_2d_with_download_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls: list[str] = []

    def fake_get(url: str, stream: bool = False, timeout: object = None) -> FakeResponse:
        assert timeout is not None
        urls.append(url)
        return FakeResponse(dft_2d_zip(D2_ENTRIES))

    monkeypatch.setattr(figshare.requests, "get", fake_get)
    result = load_jarvis_dft_2d(data_home=tmp_path / "jarvis")
    assert urls == [figshare.get_db_info()["dft_2d"][0]]
    assert [r.id for r in result.records] == ["JVASP-1", "JVASP-3"]
    assert result.records[0].targets == {"target": 1.6}
    assert "'na' is not a number" in result.rejected[0].reason
    # jarvis-tools' own cache name, nothing else left behind
    assert [p.name for p in (tmp_path / "jarvis").iterdir()] == [f"{D2_NAME}.zip"]
    again = load_jarvis_dft_2d(data_home=tmp_path / "jarvis")  # cached zip, no new download
    assert len(urls) == 1 and len(again.records) == 2
    # the file jarvis-tools itself reads (same zip, same member)
    entries = figshare.get_request_data(D2_NAME, "unused-url", str(tmp_path / "jarvis"))
    assert len(urls) == 1 and entries == D2_ENTRIES


def forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(figshare.requests, "get", fail)


def test_jarvis_dft_2d_local_copy_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_network(monkeypatch)
    zipped = tmp_path / "zip" / f"{D2_NAME}.zip"
    zipped.parent.mkdir()
    zipped.write_bytes(dft_2d_zip(D2_ENTRIES))
    plain = tmp_path / "plain" / D2_NAME
    plain.parent.mkdir()
    plain.write_text(json.dumps(D2_ENTRIES))
    renamed = tmp_path / "my_dft_2d.json.gz"
    with gzip.open(renamed, "wt") as fh:
        json.dump(D2_ENTRIES, fh)
    for home in (zipped.parent, zipped, plain.parent, plain, renamed):
        result = load_data("jarvis:dft_2d", data_home=home)
        assert [r.id for r in result.records] == ["JVASP-1", "JVASP-3"], home
        assert result.source.startswith("jarvis:dft_2d")
    for path in (zipped, plain):  # the file as a data spec, with dft_2d's target named
        result = load_data(str(path), target="optb88vdw_bandgap")
        assert [r.targets["target"] for r in result.records] == [1.6, 0.0]


def test_jarvis_dft_2d_absent_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise requests.ConnectionError("Failed to resolve 'ndownloader.figshare.com'")

    monkeypatch.setattr(figshare.requests, "get", offline)
    home = tmp_path / "jarvis"
    with pytest.raises(ValueError, match="no local copy of JARVIS dft_2d") as info:
        load_data("jarvis:dft_2d", data_home=home)
    message = str(info.value)
    for part in ("figshare dataset 'dft_2d'", f"{D2_NAME}.zip", str(home), "Failed to resolve"):
        assert part in message, part
    assert list(home.iterdir()) == []  # no partial download left
    monkeypatch.setattr(figshare.requests, "get", lambda *a, **k: FakeResponse(b"<html>"))
    with pytest.raises(ValueError, match="not a zip file"):
        load_jarvis_dft_2d(data_home=home)
    assert list(home.iterdir()) == []
    forbid_network(monkeypatch)
    with pytest.raises(ValueError, match="downloading is off.*put that file"):
        load_jarvis_dft_2d(data_home=home, download_if_missing=False)
    with pytest.raises(ValueError, match="that file does not exist"):
        load_jarvis_dft_2d(data_home=tmp_path / f"{D2_NAME}.zip")
    monkeypatch.setenv("ATOMGPTLAB_CACHE", str(tmp_path / "default"))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "default" / "jarvis_data"))):
        load_jarvis_dft_2d(download_if_missing=False)


def test_corrupt_local_copy_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)
    bad = tmp_path / f"{D2_NAME}.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("a.json", "[]")
        zf.writestr("b.json", "[]")
    with pytest.raises(ValueError, match=re.escape(f"{bad}: no {D2_NAME} member")):
        load_data("jarvis:dft_2d", data_home=tmp_path)
