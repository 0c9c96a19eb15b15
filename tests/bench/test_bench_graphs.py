"""tlsearch bench graphs on generated structures: both builders time every structure, in
alternating chunks, and agree edge for edge."""

from __future__ import annotations

import pytest

from tlsearch.structures.generate import generate_dataset


@pytest.mark.peer
def test_bench_graphs_times_both_builders_in_chunks_and_finds_equal_edges():
    pytest.importorskip("alignn.graphs")
    from tlsearch.bench.graphs import bench_graphs

    records = generate_dataset(7, seed=5, max_atoms=8).records
    result = bench_graphs(records, chunk=3)  # chunks 3 + 3 + 1, the last led by alignn
    assert result["structures"] == 7 and result["structures_with_different_edges"] == 0
    ours, theirs = result["tlsearch_structures_per_s"], result["alignn_structures_per_s"]
    assert result["speedup"] == pytest.approx(ours / theirs)
    assert result["speedup_median_per_chunk"] > 0
