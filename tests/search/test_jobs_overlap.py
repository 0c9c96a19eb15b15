"""Train/test overlap in the search: the dataset-level opt-in, and held-out splits without
copies of pool structures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from tlsearch.jobs.config import DataRef, JobConfig
from tlsearch.jobs.run import split_test, training_run_config
from tlsearch.search.plan.points import data_ref
from tlsearch.search.plan.spec import SearchSpec
from tlsearch.structures.generate import generate_dataset, write_jarvis_json
from tlsearch.structures.load import load_data


def _spec(**dataset) -> SearchSpec:
    return SearchSpec.model_validate(
        {
            "name": "t",
            "datasets": {"A": {"data": "a.json", "test": "b.json", **dataset}, "B": "generated:9"},
            "targets": ["A"],
            "pt_sources": ["B"],
        }
    )


def test_dataset_opt_in_reaches_the_run_config(tmp_path):
    for allow in (False, True):
        spec = _spec(allow_test_overlap=True) if allow else _spec()
        ref = data_ref(spec, "A", None, 0, "random", str(tmp_path))
        assert ref.allow_test_overlap is allow
        job = JobConfig(kind="scratch", seed=0, data=ref)
        assert training_run_config(job, ref, tmp_path).allow_test_overlap is allow


def test_split_test_keeps_copies_of_pool_structures_out_of_the_test_set(tmp_path):
    records = generate_dataset(30, seed=4).records
    copies = [replace(r, id=f"copy-{r.id}") for r in records]  # every structure twice
    data = write_jarvis_json(records + copies, tmp_path / "all.json")
    ref = DataRef(name="A", data=str(data), test_fraction=0.2, split_seed=0)
    pool, test = split_test(ref, tmp_path / "split")
    pool_hashes = {r.content_hash() for r in load_data(pool).records}
    test_records = load_data(test).records
    assert not {r.content_hash() for r in test_records} & pool_hashes
    n_pool = len(json.loads(Path(pool).read_text()))
    assert n_pool + len(test_records) == 60 and len(test_records) < 12
