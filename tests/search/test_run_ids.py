"""Run ids name the data a configuration reads (file contents, not paths): they change with
``vars`` and the files, stay the same across machines and between a run and its resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlsearch.search.plan.points import Point, config_hash, resolve_datasets, run_id_for
from tlsearch.search.plan.spec import SearchSpec

SCRATCH = Point("scratch", "A", 10, "random", 1e-3)
TRANSFER = Point("finetune", "A", 10, "random", 1e-3, "B", 100, "unfreeze_all")


def data_dir(root: Path, content: str = "v1") -> Path:
    """A paper-like folder: FT trial files by size, a test file, a PT pool per size."""
    for trial in (1, 2):
        for size in (10, 20):
            path = root / "ft" / f"a_trial{trial}_{size}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{content} trial {trial} size {size}")
    (root / "test.json").write_text(f"{content} test")
    (root / "pt_100.json").write_text(f"{content} pool")
    return root


def spec_for(paper: str, **over) -> SearchSpec:
    data = {
        "name": "ids",
        "vars": {"paper": paper},
        "datasets": {
            "A": {"data": "{paper}/ft/a_trial{trial}_{size}.json", "test": "{paper}/test.json"},
            "B": "{paper}/pt_{size}.json",
        },
        "targets": ["A"],
        "pt_sources": ["B"],
        "ft_sizes": [10],
        "pt_sizes": [100],
        "seeds": [0, 1],
    }
    data.update(over)
    return SearchSpec.model_validate(data)


def test_run_ids_follow_the_data_the_vars_point_at(tmp_path):
    old = data_dir(tmp_path / "old", "v1")
    new = data_dir(tmp_path / "new", "v2")
    spec_old, spec_new = spec_for(str(old)), spec_for(str(new))
    for point in (SCRATCH, TRANSFER):
        # same pattern, vars pointing at other files: another configuration
        assert config_hash(spec_old, point) != config_hash(spec_new, point)
    (new / "pt_100.json").write_text("v1 pool")  # the PT pool is the same again
    assert config_hash(spec_old, SCRATCH) != config_hash(spec_new, SCRATCH)


def test_the_same_files_elsewhere_give_the_same_ids(tmp_path, monkeypatch):
    """Another machine (another folder, relative or absolute vars) or the same one later."""
    here = data_dir(tmp_path / "machine1" / "paper")
    there = data_dir(tmp_path / "machine2" / "data" / "paper")
    monkeypatch.chdir(tmp_path / "machine1")
    relative = config_hash(spec_for("paper"), TRANSFER)
    assert relative == config_hash(spec_for(str(here)), TRANSFER)
    assert relative == config_hash(spec_for(str(there)), TRANSFER)
    assert relative == config_hash(spec_for("data/paper"), TRANSFER, str(tmp_path / "machine2"))
    # a trial runs in its own folder with the resolved spec: the driver's ids
    resolved = resolve_datasets(spec_for("paper"), str(tmp_path / "machine1"))
    monkeypatch.chdir(tmp_path)
    assert run_id_for(resolved, TRANSFER, 1) == f"{relative}-s1"


@pytest.mark.parametrize(
    "changed",
    ["ft/a_trial2_10.json", "test.json", "pt_100.json"],
    ids=["a-seed's-file", "test-set", "pt-pool"],
)
def test_changing_a_file_the_configuration_reads_changes_its_id(tmp_path, changed):
    paper = data_dir(tmp_path / "paper")
    spec = spec_for(str(paper))
    before = config_hash(spec, TRANSFER)
    assert config_hash(spec, TRANSFER) == before  # stable while nothing changes
    (paper / changed).write_text("edited")
    assert config_hash(spec, TRANSFER) != before


def test_files_of_other_sizes_do_not_change_the_id(tmp_path):
    paper = data_dir(tmp_path / "paper")
    spec = spec_for(str(paper))
    before = config_hash(spec, SCRATCH)
    (paper / "ft" / "a_trial1_20.json").write_text("edited")  # FT size 20, not 10
    (paper / "pt_100.json").write_text("edited")  # a scratch run reads no PT pool
    assert config_hash(spec, SCRATCH) == before


def test_resolved_specs_keep_jobs_and_placeholders(tmp_path):
    from tlsearch.search.plan.points import build_job

    paper = data_dir(tmp_path / "paper")
    spec = spec_for("paper", vars={"paper": "paper"})
    resolved = resolve_datasets(spec, str(tmp_path))
    assert resolved.datasets["A"].data == f"{paper}/ft/a_trial{{trial}}_{{size}}.json"
    assert resolve_datasets(resolved, "/elsewhere") == resolved  # idempotent
    job = build_job(resolved, SCRATCH, 1, "/elsewhere")
    assert job == build_job(spec, SCRATCH, 1, str(tmp_path))
    assert job.data.data == str(paper / "ft" / "a_trial2_10.json")


def test_the_model_kernel_is_not_part_of_a_runs_identity(tmp_path):
    """``model: {kernel: ...}`` chooses how the layers compute, not what: the run ids and the
    PT cache keys stay those of the spec without it, and the jobs carry it to training."""
    from tlsearch.jobs.identity import pretrain_key
    from tlsearch.search.plan.points import build_job, pretrain_job

    paper = str(data_dir(tmp_path / "paper"))
    plain = spec_for(paper, model={"hidden_features": 32})
    for kernel in ("reference", "fused", "auto"):
        chosen = spec_for(paper, model={"hidden_features": 32, "kernel": kernel})
        for point in (SCRATCH, TRANSFER):
            assert run_id_for(chosen, point, 0) == run_id_for(plain, point, 0)
        pt_chosen, pt_plain = (pretrain_job(s, TRANSFER, 0, paper) for s in (chosen, plain))
        assert pretrain_key(pt_chosen) == pretrain_key(pt_plain)
        assert pt_chosen.model["kernel"] == kernel
        assert build_job(chosen, SCRATCH, 0, paper).model["kernel"] == kernel
    # a width is part of it
    wider = spec_for(paper, model={"hidden_features": 64})
    assert run_id_for(wider, SCRATCH, 0) != run_id_for(plain, SCRATCH, 0)


def test_scheme_specs_are_identified_by_their_text():
    spec = SearchSpec.model_validate(
        {
            "name": "s",
            "vars": {"n": "50"},
            "datasets": {"A": "generated:{n}:1"},
            "targets": ["A"],
        }
    )
    other = spec.model_copy(update={"vars": {"n": "60"}})
    assert config_hash(spec, SCRATCH) != config_hash(other, SCRATCH)


def test_trials_record_the_run_ids_the_driver_plans(tmp_path, local_ray):
    """Relative data paths: trials (in their own folders) name seed-runs as the driver does."""
    from tests.search.conftest import FAKE_JOB
    from tlsearch.results.store import RunStore
    from tlsearch.search.run.driver import run_search

    data_dir(tmp_path / "paper")
    spec = spec_for(
        "paper", storage="store", scratch=True, pt_sources=[], testing={"job_fn": FAKE_JOB}
    )
    status = run_search(spec, base_dir=str(tmp_path), verbose=0)
    assert status.completed == 2
    rows = RunStore.for_search(tmp_path / "store", "ids").rows()
    expected = {run_id_for(spec, SCRATCH, seed, str(tmp_path)) for seed in (0, 1)}
    assert {r["run_id"] for r in rows} == expected
