"""An s3:// storage end to end against a local S3 server (moto): rows, Tune state, PT cache,
resume and the analysis all on the object store. The URI carries ``endpoint_override`` and
``scheme`` query parameters, as for MinIO or any S3-compatible on-prem store."""

from __future__ import annotations

import os

import pytest

from tests.search.conftest import REPO, executions, fake_spec
from tlsearch.results.store import RunStore
from tlsearch.storage.uri import join

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_uri():
    """A bucket on a local S3 server, and a Ray whose workers have its credentials."""
    ray = pytest.importorskip("ray")
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="tlsearch-test")
    ray.shutdown()  # workers must start with the credentials in their environment
    env = {**CREDENTIALS, "PYTHONPATH": str(REPO)}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env})
    yield f"s3://tlsearch-test/results?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
    ray.shutdown()
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_join_keeps_the_query_at_the_end():
    uri = "s3://b/x?endpoint_override=h:9000&scheme=http"
    assert join(uri, "s", "runs") == "s3://b/x/s/runs?endpoint_override=h:9000&scheme=http"
    assert join("/tmp/a?b", "c") == "/tmp/a?b/c"  # local paths have no query


def test_a_search_runs_resumes_and_analyses_on_s3(s3_uri, tmp_path):
    from tlsearch.analysis.best_pair import rank
    from tlsearch.analysis.frame import load_runs
    from tlsearch.search.run.driver import run_search

    spec = fake_spec(tmp_path, name="objstore", storage=s3_uri)
    status = run_search(spec, verbose=0)
    assert (status.planned, status.completed, status.failed) == (4, 4, 0)
    assert status.pretrain_counts == {"ok": 1}
    store = RunStore.for_search(s3_uri, "objstore")
    rows = store.rows()
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)
    ran = len(executions(tmp_path))
    run_search(spec, resume=True, verbose=0)  # nothing left: nothing runs again
    assert len(executions(tmp_path)) == ran
    results = load_runs(s3_uri)
    assert len(results.seed_runs) == 4 and results.planned_seeds() == 2
    assert rank(results, "A").winner is not None


def test_a_prefiltered_search_keeps_its_ranking_on_s3(s3_uri, tmp_path):
    """search.prefilter's lock (a claim on the object store) and ranking file live on S3."""
    import json

    from tlsearch.search.run.driver import run_search
    from tlsearch.storage.uri import read_text

    spec = fake_spec(
        tmp_path,
        name="objstore-pf",
        storage=s3_uri,
        datasets={"A": "ok", "B": "ok", "C": "ok"},
        pt_sources=["B", "C"],
        search={"prefilter": {"keep": 1}},
        testing={
            "job_fn": "tests.search.fakes:fake_job",
            "rank_fn": "tests.search.fakes:fake_rank",
        },
    )
    status = run_search(spec, verbose=0)
    assert status.counts == {"ok": 4, "skipped": 2}  # scratch and B; C skipped
    skipped = [
        r
        for r in RunStore.for_search(s3_uri, "objstore-pf").rows()
        if r["kind"] != "pretrain" and r["status"] == "skipped"
    ]
    assert {r["pt_source"] for r in skipped} == {"C"}
    key = skipped[0]["error"].rsplit("prefilter/", 1)[1].removesuffix(".json")
    ranking = json.loads(read_text(join(s3_uri, "objstore-pf", "prefilter", f"{key}.json")))
    assert ranking["kept"] == ["B"] and [m["model"] for m in ranking["models"]] == ["B", "C"]
    assert not (tmp_path / "store").exists()  # nothing written locally instead
