"""Tests for the built-in dataset generator and the jarvis JSON writer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tlsearch.structures.generate import (
    IONIC_RADII,
    ewald_energy_per_atom,
    generate_arrays,
    generate_dataset,
    morse_energy_per_atom,
    prototypes,
    sample_structure,
    write_jarvis_json,
)
from tlsearch.structures.jarvis_json import load_jarvis_json
from tlsearch.structures.validate import RawRecord, validate_records

EXPECTED_SPACEGROUPS = {
    "rocksalt": (225, 8),
    "cscl": (221, 2),
    "zincblende": (216, 8),
    "wurtzite": (186, 4),
    "perovskite": (221, 5),
    "fluorite": (225, 12),
    "rutile": (136, 6),
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # spglib's error-handling notice
def test_prototypes_have_the_named_symmetry() -> None:
    """Unstrained prototypes (one element per role) have the intended space group (spglib)."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    stand_in = {"A": "Ba", "B": "Ti", "X": "O"}
    assert set(prototypes()) == set(EXPECTED_SPACEGROUPS)
    for name, proto in prototypes().items():
        structure = Structure(
            Lattice(proto.lattice(2.0)), [stand_in[r] for r in proto.roles], proto.frac_coords
        )
        number, n_sites = EXPECTED_SPACEGROUPS[name]
        analyzer = SpacegroupAnalyzer(structure, symprec=1e-3)
        assert analyzer.get_space_group_number() == number, name
        assert len(structure) == n_sites, name
        assert proto.spacegroup == analyzer.get_space_group_symbol(), name


def test_families_are_charge_balanced_and_have_radii() -> None:
    for proto in prototypes().values():
        for family in proto.families:
            charge = sum(family[role][0] for role in proto.roles)
            assert charge == 0, (proto.name, family)
            for role, (state, elements) in family.items():
                assert role in proto.roles
                assert all((e, state) in IONIC_RADII for e in elements)


def test_generate_dataset_is_deterministic() -> None:
    a = generate_dataset(12, seed=3)
    b = generate_dataset(12, seed=3)
    c = generate_dataset(12, seed=4)
    assert [r.id for r in a.records] == [f"gen-{i:05d}" for i in range(12)]
    assert [r.content_hash() for r in a.records] == [r.content_hash() for r in b.records]
    assert [r.targets for r in a.records] == [r.targets for r in b.records]
    assert [r.content_hash() for r in a.records] != [r.content_hash() for r in c.records]
    prefix = generate_dataset(5, seed=3)
    assert [r.content_hash() for r in prefix.records] == [r.content_hash() for r in a.records[:5]]


def test_generated_records_are_sensible() -> None:
    result = generate_dataset(60, seed=0, max_atoms=16)
    assert not result.rejected
    assert all(1 <= r.num_atoms <= 16 for r in result.records)
    targets = np.array([r.targets["target"] for r in result.records])
    assert np.all(np.isfinite(targets)) and targets.std() > 0.1
    assert len({r.species for r in result.records}) > 20
    volumes = [abs(np.linalg.det(r.lattice)) / r.num_atoms for r in result.records]
    assert min(volumes) > 5.0 and max(volumes) < 80.0  # Angstrom^3 per atom, crystal-like


def test_no_supercells_and_prototype_subset() -> None:
    result = generate_dataset(10, supercells=False, prototypes=("rutile",))
    assert all(r.num_atoms == 6 for r in result.records)
    with pytest.raises(ValueError, match="unknown prototype 'spinel'"):
        generate_dataset(2, prototypes=("spinel",))
    with pytest.raises(ValidationError):
        generate_dataset(2, colour="red")
    with pytest.raises(ValueError, match="no prototype fits max_atoms=4"):
        generate_dataset(2, max_atoms=4, prototypes=("fluorite",))


def test_property_varies_with_strain() -> None:
    rng = np.random.default_rng(0)
    proto = prototypes()["rocksalt"]
    g = sample_structure(rng, proto, (1, 1, 1), strain=0.0, substitution=0.0, rattle=0.0)
    energies = [
        morse_energy_per_atom(g.lattice * s, g.frac_coords, g.radii, g.oxidation_states)
        for s in (0.95, 1.0, 1.05)
    ]
    assert len({round(e, 6) for e in energies}) == 3
    assert energies[1] < energies[0]  # compression costs energy near equilibrium
    ewald = [
        ewald_energy_per_atom(g.lattice * s, g.frac_coords, g.species, g.oxidation_states)
        for s in (1.0, 1.05)
    ]
    assert ewald[0] < ewald[1] < 0  # ionic crystals: negative, weaker when expanded
    strained = generate_dataset(8, seed=1, strain=0.05)
    unstrained = generate_dataset(8, seed=1, strain=0.0)
    pairs = zip(strained.records, unstrained.records, strict=True)
    assert any(abs(a.targets["target"] - b.targets["target"]) > 1e-3 for a, b in pairs)


def test_ewald_property() -> None:
    result = generate_dataset(6, seed=2, prop="ewald", max_atoms=12)
    targets = [r.targets["target"] for r in result.records]
    assert all(t < 0 for t in targets)


def test_generate_arrays() -> None:
    records = list(generate_arrays(300, seed=5, min_atoms=20, max_atoms=40))
    again = list(generate_arrays(300, seed=5, min_atoms=20, max_atoms=40))
    assert [r.content_hash() for r in records] == [r.content_hash() for r in again]
    assert records[0].id == "gen-000000"
    assert all(20 <= r.num_atoms <= 40 for r in records)
    assert 25 <= np.mean([r.num_atoms for r in records]) <= 35
    assert len({r.content_hash() for r in records}) == 300
    raw = (RawRecord(r.id, r.lattice, r.frac_coords, r.species, r.targets) for r in records)
    assert len(validate_records(raw, "arrays").records) == 300
    with pytest.raises(ValueError, match="no prototype supercell"):
        next(generate_arrays(1, min_atoms=5000, max_atoms=6000))


@pytest.mark.slow
def test_generate_arrays_at_paper_scale() -> None:
    start = time.perf_counter()
    n_atoms = sum(r.num_atoms for r in generate_arrays(132_752, seed=0))
    assert time.perf_counter() - start < 60
    assert 25 < n_atoms / 132_752 < 35


@pytest.mark.parametrize("name", ["gen.json", "gen.json.gz"])
def test_write_jarvis_json_round_trip(tmp_path: Path, name: str) -> None:
    original = generate_dataset(7, seed=9).records
    path = write_jarvis_json(original, tmp_path / "sub" / name)
    loaded = load_jarvis_json(path).records
    assert [r.id for r in loaded] == [r.id for r in original]
    for a, b in zip(original, loaded, strict=True):
        np.testing.assert_allclose(a.lattice, b.lattice)
        np.testing.assert_allclose(a.frac_coords, b.frac_coords)
        assert a.species == b.species and a.targets == b.targets
        assert a.content_hash() == b.content_hash()


@pytest.mark.parametrize(
    "lattice",
    [
        np.diag([3.0, 3.2, 3.5]),
        np.array([[4.0, 0.0, 0.0], [3.6, 1.2, 0.0], [0.4, 0.3, 2.6]]),  # strongly sheared
        np.array([[2.2, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 9.0]]),
    ],
)
def test_pair_vectors_find_every_pair_within_the_cutoff(lattice) -> None:
    """Every periodic pair within the cutoff, in the same order as a brute force over a wide
    block of images (so energies sum identically)."""
    import itertools

    from tlsearch.structures.generate import _pair_vectors

    frac = np.random.default_rng(0).random((5, 3)) * 3 - 1  # outside [0, 1) too
    cutoff = 5.5
    i, j, r = _pair_vectors(lattice, frac, cutoff)
    cart = np.mod(frac, 1.0) @ lattice
    wide = np.array(list(itertools.product(range(-9, 10), repeat=3)), float) @ lattice
    d = np.linalg.norm(cart[None, None] - cart[None, :, None] + wide[:, None, None], axis=-1)
    img, bi, bj = np.nonzero((d > 1e-8) & (d < cutoff))
    assert (i.tolist(), j.tolist()) == (bi.tolist(), bj.tolist())
    np.testing.assert_allclose(r, d[img, bi, bj], rtol=0, atol=1e-12)
