"""Results written by an earlier version stay valid: the quickstart's run ids and PT key are
the ones main computed before the search layer was reorganised, and a search folder that main
wrote (``tests/fixtures/main_search``) resumes with nothing rerun."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq

import tlsearch.api as api
from tests.search.conftest import REPO
from tlsearch.search.plan.compile import compile_plan, compile_spec
from tlsearch.search.plan.points import resolve_datasets, run_id_for
from tlsearch.search.plan.prepare import resolve_storage, smoke_spec
from tlsearch.search.plan.spec import load_spec

QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"
FIXTURE = REPO / "tests" / "fixtures" / "main_search"
FIXTURE_STORAGE = "/tmp/plan-fixture"  # where main wrote it (spec.yaml records it)

#: Computed by main at cac9dcb (search_spaces/quickstart.yaml, and with --smoke).
QUICKSTART_CONFIGS = [
    "5d0613cb81dff72f",
    "73ae06d2a50d5375",
    "82938c521452932c",
    "acca11b428447e1d",
    "b83e7ff762f3a234",
    "c9700888f7df5eae",
]
QUICKSTART_PT_KEY = "fdf7942e7b6eb222da1f"
SMOKE_RUN_IDS = ["09e03f4c7be93a4f-s0", "8325892aefc29a22-s0"]
SMOKE_PT_KEY = "454612623a397926739e"


def planned(smoke: bool, base_dir: str) -> tuple[list[str], list[str]]:
    """The quickstart's seed-run ids and PT keys, as the search's plan records them."""
    spec = load_spec(QUICKSTART)
    if smoke:
        spec = smoke_spec(spec)
    spec = resolve_storage(spec, base_dir)
    trial_spec = resolve_datasets(spec, base_dir)
    plan = compile_plan(compile_spec(spec, base_dir), trial_spec, base_dir)
    ids = [record.run_id for record in plan.seed_runs]
    for record in plan.seed_runs:  # the id a trial computes from its point and seed
        assert run_id_for(trial_spec, record.point, record.seed) == record.run_id
    return sorted(ids), sorted(record.key for record in plan.pretrain_jobs)


def test_the_quickstart_keeps_its_run_ids_and_pt_key(tmp_path):
    ids, keys = planned(False, str(tmp_path))
    assert ids == [f"{c}-s{seed}" for c in QUICKSTART_CONFIGS for seed in range(5)]
    assert keys == [QUICKSTART_PT_KEY]
    assert planned(True, str(tmp_path)) == (SMOKE_RUN_IDS, [SMOKE_PT_KEY])


def test_a_search_folder_written_by_main_resumes_with_nothing_rerun(tmp_path, local_ray):
    storage = tmp_path / "results"
    shutil.copytree(FIXTURE, storage)
    spec_file = storage / "quickstart-smoke" / "spec.yaml"  # the copy lives elsewhere
    spec_file.write_text(spec_file.read_text().replace(FIXTURE_STORAGE, str(storage)))
    runs = storage / "quickstart-smoke" / "runs"
    before = {p.name: p.read_bytes() for p in sorted(runs.iterdir())}

    search = api.run_search(QUICKSTART, storage=str(storage), smoke=True, resume=True)

    after = {p.name: p.read_bytes() for p in sorted(runs.iterdir())}
    assert after == before  # no row rewritten, none added
    assert sorted(before) == sorted([*(f"{r}.parquet" for r in SMOKE_RUN_IDS),
                                     f"pt-{SMOKE_PT_KEY}.parquet"])  # fmt: skip
    assert {pq.read_table(runs / f"{r}.parquet")["status"][0].as_py() for r in SMOKE_RUN_IDS} == {
        "ok"
    }
    status = search.summary()
    assert (status["planned"], status["completed"], status["failed"]) == (2, 2, 0)
    assert not (storage / "quickstart-smoke" / "work").exists()  # nothing trained
    assert sorted(p.name for p in (storage / "pretrained").iterdir()) == [SMOKE_PT_KEY]
