"""tlsearch bench train on a few generated structures: both models step, ratios are reported."""

from __future__ import annotations

import argparse

import pytest

from tlsearch.structures.generate import generate_dataset


@pytest.mark.peer
def test_bench_train_reports_total_and_per_step_ratios():
    pytest.importorskip("alignn.models.alignn_atomwise_pure")
    from tlsearch.bench.train import bench_train

    records = generate_dataset(12, seed=3, max_atoms=6).records
    args = argparse.Namespace(steps=2, warmup=1, batch_size=4, threads=1, device="cpu")
    result = bench_train(records, args)
    assert result["tlsearch_structures_per_s"] > 0 and result["alignn_structures_per_s"] > 0
    low, high = result["speedup_per_step_min_max"]
    assert low <= result["speedup_median_per_step"] <= high
    ours, theirs = result["tlsearch_structures_per_s"], result["alignn_structures_per_s"]
    assert result["speedup"] == pytest.approx(ours / theirs)
    assert result["tlsearch_fraction_of_roofline"] > 0
