"""Graph store: in-memory vs cached, cache hit, rejections, batching, pickling."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch

from tlsearch.graphs import store as graphs
from tlsearch.graphs.features import cgcnn_table
from tlsearch.graphs.settings import GraphSettings
from tlsearch.graphs.store import build_graph_store, dataset_key
from tlsearch.graphs.verify import CorruptEntryError, verify_entry


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


def _entry(tiny_records, tmp_path):
    store = build_graph_store(tiny_records, cache_dir=tmp_path, progress=False)
    return store, store.path


def _overwrite_vectors(entry):
    data = np.fromfile(entry / "vectors.f32", dtype=np.float32)
    np.full_like(data, 1e30).tofile(entry / "vectors.f32")


def _truncate_edges(entry):
    data = (entry / "edges.i32").read_bytes()
    (entry / "edges.i32").write_bytes(data[: len(data) // 2])


def _edge_out_of_range(entry):
    edges = np.fromfile(entry / "edges.i32", dtype=np.int32)
    edges[0] = 10_000
    edges.tofile(entry / "edges.i32")


def _bad_meta(entry):
    (entry / "meta.json").write_text("{not json")


def _no_meta(entry):
    (entry / "meta.json").unlink()


@pytest.mark.parametrize(
    ("corrupt", "named"),
    [
        (_overwrite_vectors, "vectors.f32: checksum"),
        (_truncate_edges, "edges.i32: checksum"),
        (_edge_out_of_range, "edges.i32: checksum"),
        (_bad_meta, "meta.json: unreadable"),
        (_no_meta, "meta.json: unreadable"),
    ],
)
def test_a_corrupt_entry_is_rebuilt_with_a_warning_never_read(
    tiny_records, tmp_path, caplog, corrupt, named
):
    graphs._VERIFIED.clear()
    first, entry = _entry(tiny_records, tmp_path)
    good = [tuple(np.array(a) for a in first.graph(i)) for i in range(len(first))]
    corrupt(entry)
    caplog.set_level("WARNING")
    again = build_graph_store(tiny_records, cache_dir=tmp_path, progress=False)
    assert not again.cache_hit  # rebuilt, not read
    assert named in caplog.text and str(entry) in caplog.text
    for i, expected in enumerate(good):
        for a, b in zip(again.graph(i), expected, strict=True):
            assert np.array_equal(np.asarray(a), b)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [entry.name]


@pytest.mark.parametrize(
    ("corrupt", "named"),
    [
        (_overwrite_vectors, "longer than 1000 A"),
        (_truncate_edges, "edges.i32: "),
        (_edge_out_of_range, "bond endpoint outside its structure"),
    ],
)
def test_an_entry_without_checksums_is_checked_for_what_training_needs(
    tiny_records, tmp_path, corrupt, named
):
    _, entry = _entry(tiny_records, tmp_path)
    meta = json.loads((entry / "meta.json").read_text())
    del meta["checksums"]  # as written before checksums were recorded
    (entry / "meta.json").write_text(json.dumps(meta))
    verify_entry(entry, len(tiny_records), graphs.CACHE_FORMAT, len(cgcnn_table()))
    corrupt(entry)
    with pytest.raises(CorruptEntryError, match=named):
        verify_entry(entry, len(tiny_records), graphs.CACHE_FORMAT, len(cgcnn_table()))


def test_atoms_closer_than_the_minimum_are_rejected_by_id_and_reason(tiny_records):
    base = tiny_records[0]
    doubled = dataclasses.replace(
        base,
        id="doubled",
        frac_coords=np.vstack([base.frac_coords, base.frac_coords[:1] + 1e-4]),
        species=(*base.species, base.species[0]),
    )
    store = build_graph_store([doubled, *tiny_records], progress=False)
    assert store.ids == [r.id for r in tiny_records]
    (rejection,) = store.rejected
    assert rejection.id == "doubled"
    assert (
        "atoms 0 and 2 are 0.00" in rejection.reason
        and "A apart (closer than 0.5 A" in rejection.reason
    )


def test_an_old_entry_with_a_zero_length_bond_is_rebuilt(tiny_records, tmp_path):
    _, entry = _entry(tiny_records, tmp_path)
    meta = json.loads((entry / "meta.json").read_text())
    del meta["checksums"]
    (entry / "meta.json").write_text(json.dumps(meta))
    vectors = np.fromfile(entry / "vectors.f32", dtype=np.float32)
    vectors[:3] = 0.0
    vectors.tofile(entry / "vectors.f32")
    with pytest.raises(CorruptEntryError, match="bonds shorter than 0.5 A"):
        verify_entry(entry, len(tiny_records), graphs.CACHE_FORMAT, len(cgcnn_table()), 0.5)
