"""Graph store: in-memory vs cached, cache hit, rejections, batching, pickling."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from tlsearch.graphs.features import cgcnn_table
from tlsearch.graphs.settings import GraphSettings
from tlsearch.graphs.store import build_graph_store, dataset_key


def test_cache_miss_then_hit_and_same_graphs(tiny_records, tmp_path, caplog):
    caplog.set_level("INFO")
    first = build_graph_store(tiny_records, cache_dir=tmp_path, progress=False)
    second = build_graph_store(tiny_records, cache_dir=tmp_path, progress=False)
    memory = build_graph_store(tiny_records, cache_dir=None, progress=False)
    assert not first.cache_hit and second.cache_hit
    assert "graph cache hit" in caplog.text
    for i in range(len(memory)):
        for a, b in zip(second.graph(i), memory.graph(i), strict=True):
            assert np.array_equal(np.asarray(a), b)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [first.path.name]


def test_key_depends_on_content_and_settings_not_ids(tiny_records):
    renamed = [dataclasses.replace(r, id=r.id + "x", targets={}) for r in tiny_records]
    strained = [dataclasses.replace(tiny_records[0], lattice=tiny_records[0].lattice * 1.01)]
    base = dataset_key(tiny_records, GraphSettings())
    assert dataset_key(renamed, GraphSettings()) == base
    assert dataset_key(strained + tiny_records[1:], GraphSettings()) != base
    assert dataset_key(tiny_records, GraphSettings(max_neighbors=8)) != base


def test_ids_come_from_the_callers_records_on_a_hit(tiny_records, tmp_path):
    build_graph_store(tiny_records, cache_dir=tmp_path, progress=False)
    renamed = [dataclasses.replace(r, id="new-" + r.id) for r in tiny_records]
    store = build_graph_store(renamed, cache_dir=tmp_path, progress=False)
    assert store.cache_hit and store.ids == [r.id for r in renamed]


def test_bad_structures_are_rejected_with_reason_and_the_rest_kept(tiny_records, tmp_path):
    bad = dataclasses.replace(tiny_records[0], id="flat", lattice=np.zeros((3, 3)))
    unknown = dataclasses.replace(tiny_records[0], id="unk", species=("Na", "Xx"))
    store = build_graph_store([bad, *tiny_records, unknown], cache_dir=tmp_path, progress=False)
    assert store.ids == [r.id for r in tiny_records]
    assert store.positions == [1, 2, 3]
    reasons = {r.id: r.reason for r in store.rejected}
    assert "non-singular" in reasons["flat"] and "Xx" in reasons["unk"]


def test_all_rejected_is_a_clear_error(tiny_records):
    bad = dataclasses.replace(tiny_records[0], lattice=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no graph could be built"):
        build_graph_store([bad], progress=False)


def test_collate_offsets_features_and_line_graph(tiny_records):
    store = build_graph_store(tiny_records, progress=False)
    batch = store.collate([2, 0])
    n_perov, n_nacl = 5, 2
    assert batch.num_graphs == 2 and batch.ids == ["perov", "nacl"]
    assert batch.num_nodes == n_perov + n_nacl
    assert batch.node_graph.tolist() == [0] * n_perov + [1] * n_nacl
    # the second graph's bonds point into its own atoms only
    second = batch.edge_index[:, store.num_edges()[2] :]
    assert (second >= n_perov).all()
    assert torch.equal(batch.atom_features[0], torch.from_numpy(cgcnn_table()[38]))  # Sr
    src, dst = batch.edge_index
    a, b = batch.lg_index
    assert torch.equal(dst[a], src[b])
    assert batch.angle_cosines.shape == (batch.num_triplets,)
    assert batch.edge_vectors.dtype == torch.float32


def test_cached_store_pickles_by_path(tiny_records, tmp_path):
    store = build_graph_store(tiny_records, cache_dir=tmp_path, progress=False)
    blob = pickle.dumps(store)
    assert len(blob) < 2000
    clone = pickle.loads(blob)
    assert torch.equal(clone.collate([0, 1]).edge_index, store.collate([0, 1]).edge_index)


def test_parallel_build_equals_serial(tiny_records):
    records = tiny_records * 4
    serial = build_graph_store(records, progress=False, workers=1)
    parallel = build_graph_store(records, progress=False, workers=2)
    assert np.array_equal(serial.num_edges(), parallel.num_edges())
    assert torch.equal(serial.collate(range(12)).edge_index, parallel.collate(range(12)).edge_index)
