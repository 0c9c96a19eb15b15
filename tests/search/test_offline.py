"""``--offline``: matminer/JARVIS datasets of the paper's specs read from the paper's files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.search.conftest import REPO
from tlsearch.search.plan.compile import compile_spec
from tlsearch.search.plan.offline import DFT_2D_STAND_IN, offline_spec
from tlsearch.search.plan.spec import SearchSpec, load_spec

PAPER_SPECS = ("hparam", "ft_size", "pt_size", "ft_strategy", "pairwise", "mpt", "ood_2d",
               "best_pair")  # fmt: skip


def _count(path: str) -> int:
    with gzip.open(path, "rt") as fh:
        return len(json.load(fh))


def _jids(path: str | Path) -> set[int]:
    with gzip.open(path, "rt") as fh:
        return {e["jid"] for e in json.load(fh)}


@pytest.fixture(scope="module")
def pools(tmp_path_factory) -> Path:
    """One folder of offline pools for the module (they are content-addressed, built once)."""
    return tmp_path_factory.mktemp("offline_pools")


@pytest.fixture
def no_network(monkeypatch):
    """Any matminer/JARVIS download fails the test."""
    import matminer.datasets

    def refuse(*args, **kwargs):
        raise AssertionError("offline mode tried to download")

    monkeypatch.setattr(matminer.datasets, "load_dataset", refuse)


@pytest.mark.realdata
@pytest.mark.parametrize("name", PAPER_SPECS)
def test_every_paper_spec_goes_offline(name, paper_data, tmp_path, no_network, pools):
    spec = load_spec(REPO / "search_spaces" / f"{name}.yaml", {"storage": str(tmp_path)})
    off = offline_spec(spec, str(REPO), pools, rehearsal=True)
    assert off.offline
    for ds_name, ds in off.datasets.items():
        assert not ds.data.startswith(("matminer:", "jarvis:")), ds_name
    plan, original = compile_spec(off, str(REPO)), compile_spec(spec, str(REPO))
    assert plan.planned_seed_runs == original.planned_seed_runs
    assert len(plan.pretrain_jobs) == len(original.pretrain_jobs)


@pytest.mark.realdata
def test_pools_targets_and_stand_ins(paper_data, tmp_path, no_network, pools):
    spec = load_spec(REPO / "search_spaces" / "pairwise.yaml", {"storage": str(tmp_path)})
    off = offline_spec(spec, str(REPO), pools)
    ds = off.datasets
    # PT pools: the whole datasets where the files hold them, nothing held out, no rescaling
    assert {k: _count(ds[f"{k}_pt"].data) for k in ("DC", "PZ", "PH")} == {
        "DC": 1056, "PZ": 941, "PH": 1265,
    }  # fmt: skip
    assert ds["BG_pt"].data.endswith("pt/bg_1000.json.gz")
    for key in ("BG_pt", "FE_pt", "GV_pt", "DC_pt", "EBG_pt"):
        assert ds[key].test is None and ds[key].test_fraction == 0
        assert ds[key].normalise == "none" and ds[key].note
    # targets: the paper's trial files; BG/FE with a stand-in test set disjoint from them
    assert ds["DC"].test.endswith("test/dc_test.json.gz") and ds["DC"].normalise is None
    for code, n in (("BG", 915), ("FE", 929)):
        target = ds[code]
        assert "{trial}" in target.data and "{size}" in target.data
        assert _count(target.test) == n and "STAND-IN" in target.note
        used = set().union(*(_jids(p) for p in (paper_data / "ft" / code.lower()).glob("*.gz")))
        assert not used & _jids(target.test)
        assert target.normalise == "none"  # the paper's files are already normalised
    # the same property keeps its name: a source still never fine-tunes onto itself
    assert off.property_of("BG_pt") == "BG"


@pytest.mark.realdata
def test_rows_say_stand_in(paper_data, tmp_path, no_network, pools):
    from tlsearch.search.plan.points import Point, provenance_columns, source_datasets

    spec = load_spec(REPO / "search_spaces" / "ft_size.yaml", {"storage": str(tmp_path)})
    off = offline_spec(spec, str(REPO), pools)
    point = Point("finetune", "BG", 800, "random", 1e-3, "DC", 941, "unfreeze_all")
    cols = provenance_columns(off, {"BG"} | source_datasets(off, point))
    assert "BG: offline: test set is a STAND-IN" in cols["data_note"]
    assert "DC_pt: offline: PT pool" in cols["data_note"] and cols["rehearsal"] is False


def _dft_spec(tmp_path: Path, paper: Path, **vars_: str) -> SearchSpec:
    return SearchSpec.model_validate({
        "name": "d2", "storage": str(tmp_path), "vars": {"paper": str(paper), **vars_},
        "datasets": {"D2": {"data": "jarvis:dft_2d", "normalise": "paper"}},
        "targets": ["D2"], "scratch": True,
    })  # fmt: skip


@pytest.mark.realdata
def test_dft_2d_offline(paper_data, tmp_path):
    spec = _dft_spec(tmp_path, paper_data)
    with pytest.raises(ValueError, match=r"dft_2d needs a local copy.*vars: \{dft_2d"):
        offline_spec(spec, str(tmp_path), tmp_path / "off")
    stand_in = offline_spec(spec, str(tmp_path), tmp_path / "off", rehearsal=True)
    assert stand_in.datasets["D2"].data == DFT_2D_STAND_IN
    assert "STAND-IN" in stand_in.datasets["D2"].note
    copy = tmp_path / "d2.json"
    copy.write_text("[]")
    local = offline_spec(_dft_spec(tmp_path, paper_data, dft_2d=str(copy)), ".", tmp_path)
    assert local.datasets["D2"].data == "jarvis:dft_2d"
    assert local.datasets["D2"].data_home == str(copy)
    with pytest.raises(FileNotFoundError, match="vars.dft_2d"):
        offline_spec(_dft_spec(tmp_path, paper_data, dft_2d="nope.json"), ".", tmp_path)


@pytest.mark.realdata
def test_dataset_in_both_roles_is_split(paper_data, tmp_path, pools):
    spec = SearchSpec.model_validate({
        "name": "both", "storage": str(tmp_path), "vars": {"paper": str(paper_data)},
        "datasets": {"BG": "matminer:BG", "DC": "matminer:DC"},
        "targets": ["BG", "DC"], "pt_sources": ["BG", "DC"], "ft_sizes": [100],
    })  # fmt: skip
    off = offline_spec(spec, str(tmp_path), pools)
    assert off.datasets["BG"].test is not None and "{size}" in off.datasets["BG"].data
    assert off.datasets["BG_pool"].data.endswith("bg_1000.json.gz")
    assert {s.dataset for s in off.pt_sources} == {"BG_pool", "DC_pool"}
    assert off.property_of("BG_pool") == "BG"
    assert (
        compile_spec(off, str(tmp_path)).planned_seed_runs
        == compile_spec(spec, str(tmp_path)).planned_seed_runs
    )


def test_missing_paper_files_and_unknown_codes(tmp_path):
    spec = SearchSpec.model_validate({
        "name": "x", "storage": str(tmp_path), "vars": {"paper": str(tmp_path / "none")},
        "datasets": {"BG": "matminer:BG"}, "targets": ["BG"], "scratch": True,
    })  # fmt: skip
    with pytest.raises(FileNotFoundError, match="vars.paper"):
        offline_spec(spec, str(tmp_path), tmp_path / "off")
    (tmp_path / "none" / "ft").mkdir(parents=True)
    other = spec.model_copy(
        update={"datasets": {"BG": spec.datasets["BG"].model_copy(update={"data": "matminer:x"})}}
    )
    with pytest.raises(ValueError, match="matminer:X is not one of the paper's datasets"):
        offline_spec(other, str(tmp_path), tmp_path / "off")


def test_a_pool_with_test_fraction_zero_holds_nothing_out(tmp_path):
    from tlsearch.jobs.config import DataRef, JobConfig
    from tlsearch.jobs.run import training_run_config

    ref = DataRef(name="P", data="generated:30:1", test_fraction=0.0)
    job = JobConfig(kind="pretrain", seed=0, data=ref)
    cfg = training_run_config(job, ref, tmp_path)
    assert cfg.data == "generated:30:1" and cfg.test is None
    assert not (tmp_path / "data").exists()  # no pool.json / test.json split written
    held = training_run_config(job, ref.model_copy(update={"test_fraction": 0.1}), tmp_path)
    assert held.test is not None and held.test.endswith("test.json")


def test_the_2d_stand_in_is_a_scheme_not_a_path():
    from tlsearch.jobs.config import absolute_spec

    assert absolute_spec(DFT_2D_STAND_IN, "/somewhere") == DFT_2D_STAND_IN
