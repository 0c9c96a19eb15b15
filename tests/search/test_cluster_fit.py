"""A search whose trials or PT jobs no node can ever hold is refused at start, naming the job,
the resource and the cluster; an autoscaling cluster whose node types are unknown only warns."""

from __future__ import annotations

import logging
import re

import pytest

from tests.search.conftest import REPO, fake_spec
from tlsearch.search.plan.compile import compile_spec
from tlsearch.search.plan.spec import Resources, load_spec
from tlsearch.search.run.cluster_fit import (
    Capacity,
    ClusterTooSmallError,
    can_place,
    check_cluster_fits,
    cluster_capacity,
    plan_demands,
    trial_slots,
)


def _plan(name: str, **over):
    return compile_spec(load_spec(REPO / "search_spaces" / name, over), str(REPO))


GPU1 = {"CPU": 8.0, "GPU": 1.0}
GPU4 = {"CPU": 48.0, "GPU": 4.0}
HEAD = {}  # num-cpus 0: the driver only


def test_placement_is_exact_not_a_sum():
    assert can_place([{"CPU": 2}] * 3, [{"CPU": 3}, {"CPU": 3}]) is False  # 6 = 6, yet no fit
    assert can_place([{"CPU": 2}, {"CPU": 2}, {"CPU": 1}], [{"CPU": 3}, {"CPU": 2}]) is True
    assert can_place([{"GPU": 1, "CPU": 4}] * 4, [GPU1] * 4) is True  # one worker per node
    assert can_place([{"GPU": 0.25, "CPU": 2}] * 4, [GPU1]) is True
    assert can_place([{"GPU": 1}], [HEAD, {"CPU": 64}]) is False


def test_a_ddp_pt_job_is_its_trial_and_its_workers_at_once():
    plan = _plan("pt_size.yaml")
    trials, ddp = plan_demands(plan)
    assert trials.bundles == ({"CPU": 2.0, "GPU": 0.25},)
    assert ddp.bundles == ({"CPU": 1.0},) + ({"CPU": 4.0, "GPU": 1.0},) * 4
    assert ddp.total() == {"CPU": 17.0, "GPU": 4.0}
    assert "4 workers" in ddp.what and "pretrain.num_workers" in ddp.what


def test_a_job_larger_than_a_fixed_cluster_is_refused_naming_resource_job_and_cluster():
    fixed = Capacity(nodes=(HEAD, GPU1, GPU1))
    with pytest.raises(ClusterTooSmallError) as err:
        check_cluster_fits(_plan("pt_size.yaml"), fixed, wait_s=0)
    text = str(err.value)
    assert "'pt_size' can never run" in text and "each DDP PT job" in text
    assert "4 GPU in all, and the cluster has 2" in text
    assert "2 x {CPU: 8, GPU: 1}" in text and "no autoscaler" in text
    assert isinstance(err.value, ValueError)  # tlsearch search: exit 2, the message last
    check_cluster_fits(_plan("pairwise.yaml"), fixed, wait_s=0)  # 1-GPU jobs fit


def test_a_trial_no_node_holds_is_refused_even_when_the_sum_would_do():
    plan = _plan("mpt.yaml")  # MPT jobs: {cpu: 8, gpu: 1} on one node
    small = Capacity(nodes=(HEAD, {"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}))
    with pytest.raises(ClusterTooSmallError, match="8 CPU on one node, and the largest node has 4"):
        check_cluster_fits(plan, small, wait_s=0)


def test_the_node_types_an_autoscaler_may_add_count():
    plan = _plan("pt_size.yaml")
    growing = Capacity(nodes=(HEAD,), node_types=((GPU1, 8), (GPU4, 2)), autoscaling=True)
    check_cluster_fits(plan, growing, wait_s=0)
    too_few = Capacity(nodes=(HEAD,), node_types=((GPU1, 2),), autoscaling=True)
    with pytest.raises(ClusterTooSmallError, match=re.escape("may add {CPU: 8, GPU: 1} x up to 2")):
        check_cluster_fits(plan, too_few, wait_s=0)


def test_an_autoscaler_of_unknown_node_types_warns_and_the_job_waits(caplog):
    unknown = Capacity(nodes=(HEAD,), autoscaling=True)
    with caplog.at_level(logging.WARNING):
        check_cluster_fits(_plan("pt_size.yaml"), unknown, wait_s=0)
    assert "is not checked: the search waits for them" in caplog.text
    assert "each DDP PT job" in caplog.text and "1 GPU on one node" in caplog.text


def test_trial_slots():
    gpu_share = Resources(cpu=2, gpu=0.25)
    assert trial_slots(gpu_share, Capacity(nodes=(HEAD, GPU1, GPU1))) == 8
    assert trial_slots(Resources(cpu=1), Capacity(nodes=({"CPU": 2.0},))) == 2
    grows = Capacity(nodes=(HEAD,), node_types=((GPU1, 3),), autoscaling=True)
    assert trial_slots(gpu_share, grows) == 12
    assert trial_slots(gpu_share, Capacity(nodes=(HEAD,), autoscaling=True)) is None


def test_a_local_ray_with_two_cpus_refuses_a_three_cpu_trial_before_anything_is_written(
    tmp_path, local_ray
):
    from tlsearch.search.run.driver import run_search

    capacity = cluster_capacity()
    assert not capacity.autoscaling and capacity.nodes == ({"CPU": 2.0},)
    spec = fake_spec(tmp_path, resources={"cpu": 3})
    with pytest.raises(
        ClusterTooSmallError, match=r"3 CPU on one node, and the largest node has 2"
    ):
        run_search(spec, verbose=0)
    ddp = fake_spec(
        tmp_path, pretrain={"num_workers": 3, "cpus_per_worker": 1, "resources": {"cpu": 0.5}}
    )
    with pytest.raises(ClusterTooSmallError, match=r"3.5 CPU in all, and the cluster has 2"):
        run_search(ddp, verbose=0)
    assert not (tmp_path / "store" / "fake").exists()  # no plan, no Tune state, no rows


@pytest.mark.parametrize(
    ("report", "autoscaling"),
    [
        ({"active_nodes": {"node_" + "ab12" * 14: 1}}, False),  # a read-only monitor
        ({"active_nodes": {"head": 1}, "pending_launches": {"gpu_worker": 2}}, True),
        ({"active_nodes": {"headgroup": 1}}, True),  # KubeRay's head group
        (None, False),  # no report (within the wait): no autoscaler
    ],
)
def test_an_autoscaler_is_told_from_a_read_only_monitor(monkeypatch, report, autoscaling):
    import json

    from ray.experimental import internal_kv

    from tlsearch.search.run import cluster_fit

    status = {"time": 0.0} if report is None else {"autoscaler_report": report}
    values = {"__autoscaling_status": json.dumps(status).encode()}
    monkeypatch.setattr(internal_kv, "_internal_kv_get", lambda key: values.get(key))
    assert cluster_fit._autoscaler_runs(0) is autoscaling
