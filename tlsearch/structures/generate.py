"""Small, real-chemistry datasets generated on the fly for tests and the demo.

Structures are crystal prototypes (rock salt, CsCl, zinc blende, wurtzite, cubic perovskite,
fluorite, rutile) with charge-balanced species drawn from chemically sensible families, sized
from ionic radii, optionally repeated into supercells, randomly strained, partially substituted
within a sublattice and slightly rattled. Every choice comes from a seeded numpy ``Generator``,
so a seed always gives the same dataset (and structure ``i`` does not depend on ``n``).

Properties (``prop``):

- ``"morse"`` (default, fast): Morse pair-potential energy per atom (eV), numpy neighbour sum
  over periodic images, with radii-based equilibrium distances and charge-based well depths.
- ``"ewald"``: electrostatic (Ewald) energy per atom (eV) of the formal oxidation states,
  computed by pymatgen's ``EwaldSummation``.

:func:`generate_arrays` is a numpy-only path for scale tests (100k+ records) whose target is
the volume per atom. The prototypes, ionic radii and supercell templates live in
:mod:`tlsearch.structures.prototypes` (re-exported here).
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tlsearch.structures.prototypes import (
    IONIC_RADII,
    Family,
    Prototype,
    SupercellTemplate,
    prototypes,
    supercell_options,
    supercell_template,
)
from tlsearch.structures.records import LoadResult, StructureRecord
from tlsearch.structures.validate import RawRecord, validate_records

logger = logging.getLogger(__name__)

Prop = Literal["morse", "ewald"]


class GeneratorConfig(BaseModel):
    """Options of :func:`generate_dataset`."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(gt=0, description="number of structures")
    seed: int = 0
    prop: Prop = "morse"
    max_atoms: int = Field(24, ge=2, description="largest cell, in atoms")
    supercells: bool = True
    strain: float = Field(0.05, ge=0.0, lt=0.5, description="max |strain| on the diagonal")
    substitution: float = Field(0.25, ge=0.0, le=1.0, description="per-site swap probability")
    rattle: float = Field(0.02, ge=0.0, le=0.3, description="Gaussian displacement (Angstrom)")
    prototypes: tuple[str, ...] | None = None


@dataclass
class GeneratedStructure:
    """One sampled structure before its property is computed."""

    prototype: str
    lattice: np.ndarray
    frac_coords: np.ndarray
    species: tuple[str, ...]
    oxidation_states: np.ndarray
    radii: np.ndarray


SIZE_TOLERANCE = 0.15
"""Substitutes differ in ionic radius by at most this fraction (Hume-Rothery's 15 % rule)."""


@lru_cache(maxsize=512)
def _similar_size(main: str, state: int, elements: tuple[str, ...]) -> tuple[str, ...]:
    """Elements of ``elements`` whose radius is within :data:`SIZE_TOLERANCE` of ``main``'s."""
    r_main = IONIC_RADII[(main, state)]
    return tuple(
        e for e in elements if abs(IONIC_RADII[(e, state)] - r_main) <= SIZE_TOLERANCE * r_main
    )


def _assign_species(
    t: SupercellTemplate, family: Family, u: np.ndarray, substitution: float
) -> tuple[list[str], list[int], dict[str, str]]:
    """Species and oxidation state per site, from uniforms ``u`` (roles + 2 per site).

    Each role gets a main element; each site is swapped with probability ``substitution``
    for a similar-sized element of the same family.
    """
    n = len(t.frac)
    swap_u, pick_u = u[len(t.role_sites) :][:n].tolist(), u[len(t.role_sites) + n :].tolist()
    species, ox = [""] * n, [0] * n
    main: dict[str, str] = {}
    for k, (role, sites) in enumerate(t.role_sites):
        state, elements = family[role]
        main[role] = elements[int(u[k] * len(elements))]
        cands = _similar_size(main[role], state, elements)
        for i in sites:
            swapped = swap_u[i] < substitution
            species[i] = cands[int(pick_u[i] * len(cands))] if swapped else main[role]
            ox[i] = state
    return species, ox, main


def _strain_matrix(u: np.ndarray, strain: float) -> np.ndarray:
    """Symmetric ``I + eps`` from 6 uniforms: diagonal in +-strain, off-diagonal +-strain/2."""
    e = (2.0 * u - 1.0) * strain
    o = 0.5 * e[3:]
    return np.array(
        [[1 + e[0], o[0], o[1]], [o[0], 1 + e[1], o[2]], [o[1], o[2], 1 + e[2]]],
        dtype=np.float64,
    )


def sample_structure(
    rng: np.random.Generator,
    proto: Prototype,
    mult: tuple[int, ...],
    strain: float,
    substitution: float,
    rattle: float,
) -> GeneratedStructure:
    """Sample one strained, substituted, rattled supercell of ``proto`` (numpy only)."""
    t = supercell_template(proto.name, tuple(mult))
    n, n_roles = len(t.frac), len(t.role_sites)
    u = rng.random(1 + 6 + n_roles + 2 * n)
    family = proto.families[int(u[0] * len(proto.families))]
    species, ox, main = _assign_species(t, family, u[7:], substitution)
    cat, an = proto.bond
    d = IONIC_RADII[(main[cat], family[cat][0])] + IONIC_RADII[(main[an], family[an][0])]
    lattice = d * t.unit_lattice @ _strain_matrix(u[1:7], strain)
    frac = t.frac
    if rattle > 0:
        frac = frac + rng.normal(0.0, rattle, size=frac.shape) @ np.linalg.inv(lattice)
    radii = np.array([IONIC_RADII[key] for key in zip(species, ox, strict=True)])
    return GeneratedStructure(
        proto.name, lattice, frac.copy(), tuple(species), np.asarray(ox, float), radii
    )


def _pair_vectors(
    lattice: np.ndarray, frac: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, r) for all pairs i-j (periodic images included) with 0 < r < cutoff."""
    frac = np.mod(frac, 1.0)
    # A vector with fractional component f_k is at least |f_k| / |b_k| long (b_k: column k of
    # the inverse lattice), and fractional differences lie in (-1, 1): images beyond
    # ceil(cutoff |b_k|) along axis k hold no pair within the cutoff.
    reach = np.ceil(cutoff * np.linalg.norm(np.linalg.inv(lattice), axis=0)).astype(int)
    images = np.array(list(itertools.product(*(range(-k, k + 1) for k in reach))), float)
    cart = frac @ lattice
    shifts = images @ lattice
    diff = cart[None, None, :, :] - cart[None, :, None, :] + shifts[:, None, None, :]
    r = np.linalg.norm(diff, axis=-1)  # (images, i, j)
    img, i, j = np.nonzero((r > 1e-8) & (r < cutoff))
    return i, j, r[img, i, j]


def morse_energy_per_atom(
    lattice: np.ndarray,
    frac_coords: np.ndarray,
    radii: np.ndarray,
    charges: np.ndarray,
    cutoff: float = 5.5,
    alpha: float = 1.6,
) -> float:
    """Morse pair energy per atom (eV), shifted to zero at ``cutoff``.

    ``r0 = r_i + r_j``; well depth ``sqrt(|q_i q_j|)`` eV for cation-anion pairs and 0.1 eV for
    like-charged pairs.
    """
    i, j, r = _pair_vectors(lattice, frac_coords, cutoff)
    r0 = radii[i] + radii[j]
    qq = charges[i] * charges[j]
    depth = np.where(qq < 0, np.sqrt(np.abs(qq)), 0.1)

    def morse(x: np.ndarray) -> np.ndarray:
        return depth * ((1.0 - np.exp(-alpha * (x - r0))) ** 2 - 1.0)

    energy = 0.5 * float(np.sum(morse(r) - morse(np.full_like(r, cutoff))))
    return energy / len(frac_coords)


def ewald_energy_per_atom(
    lattice: np.ndarray, frac_coords: np.ndarray, species: Iterable[str], charges: np.ndarray
) -> float:
    """Ewald (electrostatic) energy per atom (eV) of the formal charges, via pymatgen."""
    from pymatgen.analysis.ewald import EwaldSummation
    from pymatgen.core import Lattice, Species, Structure

    sites = [Species(s, int(q)) for s, q in zip(species, charges, strict=True)]
    structure = Structure(Lattice(lattice), sites, frac_coords)
    return float(EwaldSummation(structure).total_energy) / len(structure)


def _property(g: GeneratedStructure, prop: Prop) -> float:
    if prop == "ewald":
        return ewald_energy_per_atom(g.lattice, g.frac_coords, g.species, g.oxidation_states)
    return morse_energy_per_atom(g.lattice, g.frac_coords, g.radii, g.oxidation_states)


def _chosen_prototypes(names: tuple[str, ...] | None) -> list[Prototype]:
    table = prototypes()
    if names is None:
        return list(table.values())
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown prototype {unknown[0]!r}; known: {sorted(table)}")
    return [table[n] for n in names]


def _iter_generated(cfg: GeneratorConfig) -> Iterator[RawRecord]:
    protos = _chosen_prototypes(cfg.prototypes)
    largest = {p.name: cfg.max_atoms if cfg.supercells else len(p.roles) for p in protos}
    options = {p.name: supercell_options(len(p.roles), 1, largest[p.name]) for p in protos}
    usable = [p for p in protos if len(p.roles) <= cfg.max_atoms]
    if not usable:
        raise ValueError(f"no prototype fits max_atoms={cfg.max_atoms}")
    for index in range(cfg.n):
        rng = np.random.default_rng((cfg.seed, index))
        proto = usable[rng.integers(len(usable))]
        mult = options[proto.name][rng.integers(len(options[proto.name]))]
        g = sample_structure(rng, proto, mult, cfg.strain, cfg.substitution, cfg.rattle)
        yield RawRecord(
            id=f"gen-{index:05d}",
            lattice=g.lattice,
            coords=g.frac_coords,
            species=g.species,
            targets={"target": _property(g, cfg.prop)},
        )


def generate_dataset(
    n: int,
    seed: int = 0,
    prop: Prop = "morse",
    max_atoms: int = 24,
    **options: object,
) -> LoadResult:
    """Generate ``n`` prototype-based structures with a computed property named ``"target"``.

    Args:
        n: number of structures (ids ``gen-00000`` ...).
        seed: random seed; the same seed gives the same dataset.
        prop: ``"morse"`` (fast pair potential) or ``"ewald"`` (pymatgen electrostatics).
        max_atoms: the largest cell generated.
        **options: further :class:`GeneratorConfig` fields (strain, substitution, rattle,
            supercells, prototypes).
    """
    cfg = GeneratorConfig(n=n, seed=seed, prop=prop, max_atoms=max_atoms, **options)
    return validate_records(_iter_generated(cfg), f"generated:{n}:{seed}:{prop}")


def generate_arrays(
    n: int,
    seed: int = 0,
    min_atoms: int = 20,
    max_atoms: int = 40,
    strain: float = 0.05,
    substitution: float = 0.25,
    rattle: float = 0.02,
) -> Iterator[StructureRecord]:
    """Yield ``n`` records quickly (numpy only), e.g. for graph-cache scale tests.

    Cells are prototype supercells with ``min_atoms..max_atoms`` atoms; the target
    (``"target"``) is the volume per atom (cubic Angstrom).
    """
    protos = list(prototypes().values())
    options = {p.name: supercell_options(len(p.roles), min_atoms, max_atoms) for p in protos}
    usable = [p for p in protos if options[p.name]]
    if not usable:
        raise ValueError(f"no prototype supercell has {min_atoms}..{max_atoms} atoms")
    rng = np.random.default_rng(seed)
    for index in range(n):
        proto = usable[rng.integers(len(usable))]
        mult = options[proto.name][rng.integers(len(options[proto.name]))]
        g = sample_structure(rng, proto, mult, strain, substitution, rattle)
        volume = abs(float(np.linalg.det(g.lattice))) / len(g.species)
        yield StructureRecord(
            id=f"gen-{index:06d}",
            lattice=g.lattice,
            frac_coords=g.frac_coords,
            species=g.species,
            targets={"target": volume},
        )


def _jarvis_entry(record: StructureRecord) -> dict[str, object]:
    lengths = np.linalg.norm(record.lattice, axis=1)
    angles = []
    for a, b in ((1, 2), (0, 2), (0, 1)):
        cos = np.dot(record.lattice[a], record.lattice[b]) / (lengths[a] * lengths[b])
        angles.append(float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))))
    reserved = {"jid", "atoms"} & set(record.targets)
    if reserved:
        raise ValueError(f"record {record.id}: target name {sorted(reserved)[0]!r} is reserved")
    atoms = {
        "lattice_mat": record.lattice.tolist(),
        "coords": record.frac_coords.tolist(),
        "elements": list(record.species),
        "abc": lengths.tolist(),
        "angles": angles,
        "cartesian": False,
        "props": [""] * record.num_atoms,
    }
    return {"jid": record.id, **record.targets, "atoms": atoms}


def write_jarvis_json(records: Iterable[StructureRecord], path: str | Path) -> Path:
    """Write records as a jarvis-style dataset array (gzip-compressed if ``path`` ends in .gz).

    Targets become top-level keys (a single target named ``"target"`` gives the paper's format).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [_jarvis_entry(r) for r in records]
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        json.dump(entries, fh)
    logger.info("wrote %d structures to %s", len(entries), path)
    return path
