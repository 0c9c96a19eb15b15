"""tlsearch bench train on a few generated structures: both models step, ratios are reported."""

from __future__ import annotations

import argparse

import pytest

from tlsearch.structures.generate import generate_dataset


@pytest.mark.peer
@pytest.mark.parametrize("heap", ["retained", "default"])
def test_bench_train_reports_total_and_per_step_ratios(monkeypatch, heap: str):
    pytest.importorskip("alignn.models.alignn_atomwise_pure")
    from tlsearch.bench import train
    from tlsearch.training import heap as heap_module

    entered = []
    real = heap_module.retained_heap

    def recording(device):
        entered.append(device)
        return real(device)

    monkeypatch.setattr(train, "retained_heap", recording)
    records = generate_dataset(12, seed=3, max_atoms=6).records
    args = argparse.Namespace(steps=2, warmup=1, batch_size=4, threads=1, device="cpu", heap=heap)
    result = train.bench_train(records, args)
    assert result["heap"] == heap and entered == (["cpu"] if heap == "retained" else [])
    assert result["tlsearch_structures_per_s"] > 0 and result["alignn_structures_per_s"] > 0
    low, high = result["speedup_per_step_min_max"]
    assert low <= result["speedup_median_per_step"] <= high
    ours, theirs = result["tlsearch_structures_per_s"], result["alignn_structures_per_s"]
    assert result["speedup"] == pytest.approx(ours / theirs)
    assert result["tlsearch_fraction_of_roofline"] > 0
    bandwidth = result["memory_bandwidth_gbs"]
    assert bandwidth > 0 and result["memory_bandwidth_one_thread_gbs"] > 0
    balance = result["matmul_roofline_gflops"] / bandwidth
    assert result["machine_balance_flop_per_byte"] == pytest.approx(balance)
    assert result["speedup_forward_backward"] > 0
    assert all(ms > 0 for ms in result["optimizer_step_ms"].values())


@pytest.mark.peer
def test_each_model_steps_with_its_own_projects_optimizer():
    """Ours: the training code's fused AdamW with decay groups; alignn: its train.py's AdamW
    over group_decay (default per-tensor loop); both at the paper's lr and weight decay."""
    pytest.importorskip("alignn.models.alignn_atomwise_pure")
    from tlsearch.bench.train import _optimizers, _ours, _peer

    optimizers = _optimizers({"tlsearch": _ours("cpu"), "alignn": _peer("cpu")})
    ours, theirs = optimizers["tlsearch"], optimizers["alignn"]
    assert ours.defaults["fused"] and not theirs.defaults.get("fused")
    for opt in (ours, theirs):
        assert opt.defaults["lr"] == 1e-3
        assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 1e-5]
