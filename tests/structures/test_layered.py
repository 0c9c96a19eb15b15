"""Tests for the generated 2D stand-in (``generated2d:N[:SEED]``, layered structures)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from tlsearch.graphs.build import build_one
from tlsearch.graphs.settings import GraphSettings
from tlsearch.structures import load_data
from tlsearch.structures.layered import STAND_IN_NOTE, generate_layered_dataset, layers
from tlsearch.structures.records import StructureRecord


def vacuum_gap(record: StructureRecord) -> float:
    """The largest empty slice (Angstrom) along c, periodic, for c normal to a and b."""
    c = np.linalg.norm(record.lattice[2])
    heights = np.sort(np.mod(record.frac_coords[:, 2], 1.0)) * c
    gaps = np.diff(np.concatenate([heights, [heights[0] + c]]))
    return float(gaps.max())


def test_1100_layered_structures_in_seconds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tlsearch.structures.layered")
    start = time.perf_counter()
    result = generate_layered_dataset(1100, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 15, elapsed  # ~2 s on one core
    assert len(result.records) == 1100 and not result.rejected
    assert [r.id for r in result.records[:2]] == ["gen2d-00000", "gen2d-00001"]
    assert STAND_IN_NOTE == "generated 2D stand-in, not JARVIS dft_2d"
    assert STAND_IN_NOTE in result.source
    assert any(STAND_IN_NOTE in m for m in caplog.messages)
    for r in result.records:
        a, b, c = r.lattice
        assert abs(np.dot(c, a)) < 1e-9 and abs(np.dot(c, b)) < 1e-9, r.id
        assert vacuum_gap(r) >= 10.0 - 0.2, r.id  # 10-15 A of vacuum, minus the rattle
    targets = np.array([r.targets["target"] for r in result.records])
    assert np.isfinite(targets).all() and targets.min() == 0.0 and targets.max() <= 8.0
    assert 0.05 < np.mean(targets == 0.0) < 0.5  # metal-like zeros, most gapped
    sizes = {r.num_atoms for r in result.records}
    assert min(sizes) <= 3 and max(sizes) <= 24


def test_deterministic_by_seed_and_independent_of_n() -> None:
    a = generate_layered_dataset(30, seed=4).records
    b = generate_layered_dataset(30, seed=4).records
    c = generate_layered_dataset(30, seed=5).records
    d = generate_layered_dataset(5, seed=4).records
    assert [r.content_hash() for r in a] == [r.content_hash() for r in b]
    assert [r.targets for r in a] == [r.targets for r in b]
    assert [r.content_hash() for r in a[:5]] == [r.content_hash() for r in d]
    assert len({r.content_hash() for r in a} & {r.content_hash() for r in c}) == 0


def test_every_layer_kind_occurs() -> None:
    names = set(layers())
    assert {"honeycomb", "1T-MX2", "2H-MX2"} < names and len(names) == 10
    species = {frozenset(r.species) for r in generate_layered_dataset(400).records}
    assert any({"Mo", "S"} <= s or {"W", "Se"} <= s for s in species)  # 2H/1T TMDs
    assert any({"B", "N"} <= s or {"Ga", "N"} <= s for s in species)  # honeycomb III-V


def test_graphs_build_with_12_neighbours_per_atom() -> None:
    records = generate_layered_dataset(300, seed=0).records
    rng = np.random.default_rng(0)
    smallest = sorted(records, key=lambda r: (r.num_atoms, -r.lattice[2, 2]))[:10]
    sample = smallest + [records[i] for i in rng.choice(len(records), 90, replace=False)]
    settings = GraphSettings()
    for r in sample:
        result = build_one(r.lattice, r.frac_coords, r.species, settings)
        assert not isinstance(result, str), (r.id, result)
        _, edges, vectors = result
        out_degree = np.bincount(edges[:, 0], minlength=r.num_atoms)
        assert out_degree.min() >= settings.max_neighbors, r.id
        assert np.linalg.norm(vectors, axis=1).min() > 1.0, r.id


def test_load_data_spec() -> None:
    result = load_data("generated2d:12:3")
    assert len(result.records) == 12 and result.records[0].id == "gen2d-00000"
    same = load_data("generated2d:12:3")
    assert [r.content_hash() for r in same.records] == [r.content_hash() for r in result.records]
    assert load_data("generated2d:12").records[0].content_hash() != result.records[0].content_hash()
    for bad in ("generated2d:x", "generated2d:0", "generated2d:1:2:3"):
        with pytest.raises(ValueError, match="generated2d:N"):
            load_data(bad)
    with pytest.raises(ValueError, match="vacuum"):
        generate_layered_dataset(3, vacuum=(2.0, 3.0))
