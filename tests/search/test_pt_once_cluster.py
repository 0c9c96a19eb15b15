"""A PT job trains once cluster-wide: a 3-node Ray cluster on loopback, storage on a local S3
server (moto), one PT source and 6 fine-tuning trials in the main grid. Trials on every node
need the PT model at once; one trains it, the others wait on its claim and reuse it."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from tests.search.conftest import REPO, executions, fake_spec_data
from tlsearch.results.store import RunStore
from tlsearch.search.plan.spec import SearchSpec

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "pt-once"


@pytest.fixture
def s3_on_three_nodes():
    """A bucket on a local S3 server and a Ray cluster of 3 one-CPU nodes whose workers have
    its credentials; yields ``(storage URI, boto3 client)``."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    client.create_bucket(Bucket=BUCKET)
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        env = {**CREDENTIALS, "PYTHONPATH": str(REPO)}
        ray.init(address=cluster.address, runtime_env={"env_vars": env})
        yield f"s3://{BUCKET}/results?endpoint_override={host}:{port}&scheme=http", client
    finally:
        ray.shutdown()
        cluster.shutdown()
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_one_pt_job_trains_once_for_six_trials_on_three_nodes(tmp_path, s3_on_three_nodes):
    from tlsearch.search.run.driver import run_search

    storage, client = s3_on_three_nodes
    data = fake_spec_data(
        tmp_path,
        name="ptonce",
        storage=storage,
        scratch=False,
        strategies=["unfreeze_all", "last_layer", "new_head"],
        seeds=[0, 1],
    )
    data["datasets"] = {  # B, the PT job's data: 6 s, long enough for every node to want it
        "A": "fake://ok?log={log}&sleep=1",
        "B": "fake://ok?log={log}&sleep=6",
    }
    spec = SearchSpec.model_validate(data)
    status = run_search(spec, verbose=0)
    assert (status.planned, status.completed, status.failed) == (6, 6, 0)
    assert status.duplicates == 0
    assert status.pretrain_counts == {"ok": 1}

    kinds = Counter(json.loads(line)[0] for line in executions(tmp_path))
    assert kinds == {"pretrain": 1, "finetune": 6}, kinds  # the PT job trained once
    rows = RunStore.for_search(storage, "ptonce").rows()
    pt = [r for r in rows if r["kind"] == "pretrain"]
    ft = [r for r in rows if r["kind"] != "pretrain"]
    assert len(pt) == 1 and len(ft) == 6
    assert {r["pt_run_id"] for r in ft} == {pt[0]["run_id"]}
    assert len({r["node"] for r in rows}) >= 2, "the trials did not spread over the nodes"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not [k for k in keys if k.endswith(".claim")], "a claim was left behind"
    assert sum(k.endswith("_COMPLETE.json") for k in keys) == 1  # one PT model uploaded
