"""Data a plan cannot read is one clear error when the search starts, never a failed row per
seed-run: missing files, a missing data_home, matminer/JARVIS downloads without network."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlsearch.search.plan import datacheck
from tlsearch.search.plan.compile import compile_spec
from tlsearch.search.plan.datacheck import DataUnavailableError, check_plan_data
from tlsearch.search.plan.points import resolve_datasets
from tlsearch.search.plan.prepare import resolve_storage
from tlsearch.search.plan.spec import SearchSpec
from tlsearch.search.run import driver


@pytest.fixture
def offline(monkeypatch):
    """No network: every probe fails (tests never touch the network)."""
    probed = []

    def reachable(url, timeout_s=0):
        probed.append(url)
        return False

    monkeypatch.setattr(datacheck, "network_reachable", reachable)
    return probed


@pytest.fixture
def online(monkeypatch):
    """The network is there: every probe succeeds (and is recorded)."""
    probed = []

    def reachable(url, timeout_s=0):
        probed.append(url)
        return True

    monkeypatch.setattr(datacheck, "network_reachable", reachable)
    return probed


def spec_of(datasets: dict, tmp_path: Path, **over) -> SearchSpec:
    data = {
        "name": "check",
        "storage": str(tmp_path / "store"),
        "vars": {"paper": str(tmp_path / "paper")},
        "datasets": datasets,
        "targets": [next(iter(datasets))],
        "scratch": True,
        "ft_sizes": [10],
        "seeds": [0, 1],
    }
    data.update(over)
    return SearchSpec.model_validate(data)


def check(spec: SearchSpec, tmp_path: Path) -> None:
    spec = resolve_storage(spec, str(tmp_path))
    check_plan_data(compile_spec(spec, str(tmp_path)), resolve_datasets(spec, str(tmp_path)),
                    str(tmp_path))  # fmt: skip


def test_missing_files_stop_the_search_before_it_starts(tmp_path, monkeypatch):
    paper = tmp_path / "paper" / "ft"
    paper.mkdir(parents=True)
    (paper / "a_trial1_10.json").write_text("[]")  # trial 2 (seed 1) is missing
    spec = spec_of(
        {
            "A": {"data": "{paper}/ft/a_trial{trial}_{size}.json", "test": "{paper}/test.json"},
            "B": "{paper}/pt_{size}.json",
        },
        tmp_path,
        pt_sources=["B"],
        pt_sizes=[100],
    )

    def connect(address):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(driver, "connect", connect)
    with pytest.raises(DataUnavailableError) as info:
        driver.run_search(spec, base_dir=str(tmp_path), verbose=0)
    message = str(info.value)
    assert "3 data problem(s), nothing was started" in message
    assert f"(data: {paper}/a_trial2_10.json): no such file" in message
    assert "seed-run A ft_size 10 seed 1" in message and "a_trial1_10" not in message
    assert f"(test: {tmp_path}/paper/test.json): no such file" in message
    assert "PT job B (size 100" in message
    # no plan, no rows: the storage holds only the driver's lock (taken before anything else)
    store = tmp_path / "store"
    assert not (store / spec.name).exists()
    assert [p.name for p in store.iterdir()] == ["locks"]


def test_optuna_cells_are_checked_too(tmp_path):
    spec = spec_of(
        {"A": "{paper}/a_{seed}.json", "B": "generated:50:1", "C": "generated:50:2"},
        tmp_path,
        pt_sources=["B", "C"],
        scratch=False,
        search={"algorithm": "optuna", "num_samples": 2, "optuna_axes": ["pt_source"]},
    )
    with pytest.raises(DataUnavailableError, match=r"transfer seed-run A ft_size 10 seed 0"):
        check(spec, tmp_path)


def test_generated_data_and_existing_files_pass(tmp_path, offline):
    (tmp_path / "a.json").write_text("[]")
    check(spec_of({"A": "a.json", "B": "generated2d:20:1"}, tmp_path, pt_sources=["B"]), tmp_path)
    assert offline == []  # nothing to download: no probe


def test_a_matminer_download_without_network_names_the_dataset_and_offline(tmp_path, offline):
    home = tmp_path / "matminer"
    home.mkdir()
    spec = spec_of({"DC": {"data": "matminer:DC", "data_home": str(home)}}, tmp_path)
    with pytest.raises(DataUnavailableError) as info:
        check(spec, tmp_path)
    message = str(info.value)
    assert "matminer dataset dielectric_constant" in message
    assert f"{home}/dielectric_constant.json.gz is not there" in message
    assert "cannot be reached (no internet on this node?)" in message and "--offline" in message
    assert "1 data problem(s)" in message  # one dataset, however many seed-runs read it
    (home / "dielectric_constant.json.gz").write_bytes(b"cached")
    check(spec, tmp_path)  # cached: no network needed


def test_a_matminer_download_with_network_is_fine(tmp_path, online, caplog):
    spec = spec_of({"DC": {"data": "matminer:DC", "data_home": str(tmp_path)}}, tmp_path)
    with caplog.at_level("INFO", logger="tlsearch.search.plan.datacheck"):
        check(spec, tmp_path)  # no error: the file will be downloaded when a seed-run reads it
    assert len(online) == 1  # the download's host was probed once, for the one dataset
    assert "dielectric_constant" in caplog.text and "will be downloaded from" in caplog.text


def test_a_missing_data_home_without_network(tmp_path, offline):
    spec = spec_of({"DC": {"data": "matminer:DC", "data_home": "nowhere"}}, tmp_path)
    with pytest.raises(DataUnavailableError, match=f"data_home {tmp_path}/nowhere does not exist"):
        check(spec, tmp_path)


def test_ebg_without_mp_api_is_refused_up_front(tmp_path, online, monkeypatch):
    from tlsearch.structures import mp_structures

    monkeypatch.setattr(mp_structures, "mp_api_available", lambda: False)
    (tmp_path / "expt_gap_kingsbury.json.gz").write_bytes(b"cached")
    spec = spec_of({"EBG": {"data": "matminer:EBG", "data_home": str(tmp_path)}}, tmp_path)
    with pytest.raises(DataUnavailableError, match="mp-api is not installed.*ebg_test"):
        check(spec, tmp_path)


def test_jarvis_dft_2d_needs_a_local_copy_without_network(tmp_path, offline):
    from tlsearch.structures.jarvis_2d import figshare_file

    store = tmp_path / "jarvis"
    store.mkdir()
    spec = spec_of({"D2": {"data": "jarvis:dft_2d", "data_home": str(store)}}, tmp_path)
    with pytest.raises(DataUnavailableError, match="no local copy of JARVIS dft_2d.*--offline"):
        check(spec, tmp_path)
    (store / f"{figshare_file()[1]}.zip").write_bytes(b"zip")
    check(spec, tmp_path)


def test_a_missing_checkpoint_source(tmp_path):
    spec = spec_of(
        {"A": "generated:50:1"},
        tmp_path,
        pt_sources=[{"checkpoint": "models/none.pt"}],
        scratch=False,
    )
    with pytest.raises(DataUnavailableError, match=f"checkpoint {tmp_path}/models/none.pt"):
        check(spec, tmp_path)
