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
the volume per atom.
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

from tlsearch.structures.records import LoadResult, StructureRecord
from tlsearch.structures.validate import RawRecord, validate_records

logger = logging.getLogger(__name__)

Prop = Literal["morse", "ewald"]

#: Approximate Shannon ionic radii (Angstrom, 6-fold) by (element, oxidation state).
IONIC_RADII: dict[tuple[str, int], float] = {
    **{(e, 1): r for e, r in [("Li", 0.76), ("Na", 1.02), ("K", 1.38), ("Rb", 1.52)]},
    **{(e, 1): r for e, r in [("Cs", 1.67), ("Ag", 1.15), ("Cu", 0.77), ("Tl", 1.50)]},
    **{(e, 2): r for e, r in [("Mg", 0.72), ("Ca", 1.00), ("Sr", 1.18), ("Ba", 1.35)]},
    **{(e, 2): r for e, r in [("Ni", 0.69), ("Co", 0.745), ("Fe", 0.78), ("Mn", 0.83)]},
    **{(e, 2): r for e, r in [("Zn", 0.74), ("Cd", 0.95), ("Hg", 1.02), ("Be", 0.45)]},
    ("Pb", 2): 1.19,
    **{(e, 3): r for e, r in [("Al", 0.535), ("Ga", 0.62), ("In", 0.80), ("B", 0.27)]},
    **{(e, 3): r for e, r in [("Sc", 0.745), ("Y", 0.90), ("La", 1.032), ("Cr", 0.615)]},
    ("Fe", 3): 0.645,
    **{(e, 4): r for e, r in [("Ti", 0.605), ("Zr", 0.72), ("Hf", 0.71), ("Sn", 0.69)]},
    **{(e, 4): r for e, r in [("Ge", 0.53), ("Ce", 0.87), ("Th", 0.94), ("U", 0.89)]},
    **{(e, 4): r for e, r in [("Mn", 0.53), ("Ru", 0.62), ("Ir", 0.625), ("Pb", 0.775)]},
    **{(e, -1): r for e, r in [("F", 1.33), ("Cl", 1.81), ("Br", 1.96), ("I", 2.20)]},
    **{(e, -2): r for e, r in [("O", 1.40), ("S", 1.84), ("Se", 1.98), ("Te", 2.21)]},
    **{(e, -3): r for e, r in [("N", 1.46), ("P", 2.12), ("As", 2.22), ("Sb", 2.45)]},
}

# A family: per role, (oxidation state, elements that may occupy that sublattice).
Family = dict[str, tuple[int, tuple[str, ...]]]

_HALIDES = ("F", "Cl", "Br", "I")
_CHALCOGENIDES = ("O", "S", "Se")


def _cubic(a: float) -> np.ndarray:
    return np.eye(3) * a


def _hexagonal(a: float, c: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])


def _tetragonal(a: float, c: float) -> np.ndarray:
    return np.diag([a, a, c])


_FCC = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
_RUTILE_U = 0.305


@dataclass(frozen=True)
class Prototype:
    """A crystal prototype: conventional cell with a site role per atom.

    Attributes:
        name: prototype name.
        spacegroup: Hermann-Mauguin symbol (tests rebuild the cell with pymatgen from it).
        roles: role of every site ("A", "B" cations; "X" anion).
        frac_coords: (n, 3) fractional coordinates of the conventional cell.
        bond: (cation role, anion role) whose radii sum gives the bond length ``d``.
        bond_scale: factor on ``d`` (e.g. shorter tetrahedral bonds).
        families: charge-balanced species families.
    """

    name: str
    spacegroup: str
    roles: tuple[str, ...]
    frac_coords: np.ndarray
    bond: tuple[str, str]
    bond_scale: float
    families: tuple[Family, ...]

    def lattice(self, d: float) -> np.ndarray:
        """Conventional lattice (rows) for cation-anion bond length ``d``."""
        s3 = np.sqrt(3.0)
        if self.name == "rocksalt":
            return _cubic(2 * d)
        if self.name == "cscl":
            return _cubic(2 * d / s3)
        if self.name in ("zincblende", "fluorite"):
            return _cubic(4 * d / s3)
        if self.name == "wurtzite":
            c = 8 * d / 3
            return _hexagonal(c / np.sqrt(8 / 3), c)
        if self.name == "perovskite":
            return _cubic(2 * d)
        if self.name == "rutile":
            a = d / (_RUTILE_U * np.sqrt(2))
            return _tetragonal(a, 0.644 * a)
        raise ValueError(f"no lattice rule for prototype {self.name!r}")


def _proto(
    name: str,
    sg: str,
    sites: list[tuple[str, tuple[float, ...]]],
    bond: tuple[str, str],
    scale: float,
    families: list[Family],
) -> Prototype:
    roles = tuple(role for role, _ in sites)
    coords = np.array([xyz for _, xyz in sites], dtype=np.float64)
    return Prototype(name, sg, roles, coords, bond, scale, tuple(families))


def _ab(cat: tuple[int, tuple[str, ...]], an: tuple[int, tuple[str, ...]]) -> Family:
    return {"A": cat, "X": an}


@lru_cache(maxsize=1)
def prototypes() -> dict[str, Prototype]:
    """The built-in prototypes by name."""
    u = _RUTILE_U
    # fmt: off
    alk = (1, ("Li", "Na", "K", "Rb", "Ag"))
    ae = (2, ("Mg", "Ca", "Sr", "Ba", "Ni", "Co", "Fe", "Mn", "Cd"))
    protos = [
        _proto(
            "rocksalt", "Fm-3m",
            [("A", p) for p in _FCC] + [("X", (p[0] + 0.5, p[1], p[2])) for p in _FCC],
            ("A", "X"), 1.0,
            [_ab(alk, (-1, _HALIDES)), _ab(ae, (-2, _CHALCOGENIDES))],
        ),
        _proto(
            "cscl", "Pm-3m", [("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))], ("A", "X"), 1.05,
            [_ab((1, ("Cs", "Rb", "Tl")), (-1, ("Cl", "Br", "I")))],
        ),
        _proto(
            "zincblende", "F-43m",
            [("A", p) for p in _FCC] + [("X", tuple(x + 0.25 for x in p)) for p in _FCC],
            ("A", "X"), 0.9,
            [
                _ab((2, ("Zn", "Cd", "Hg", "Be")), (-2, ("S", "Se", "Te"))),
                _ab((3, ("Al", "Ga", "In", "B")), (-3, ("N", "P", "As", "Sb"))),
                _ab((1, ("Cu", "Ag")), (-1, ("Cl", "Br", "I"))),
            ],
        ),
        _proto(
            "wurtzite", "P6_3mc",
            [
                ("A", (1 / 3, 2 / 3, 0)), ("A", (2 / 3, 1 / 3, 0.5)),
                ("X", (1 / 3, 2 / 3, 3 / 8)), ("X", (2 / 3, 1 / 3, 7 / 8)),
            ],
            ("A", "X"), 0.9,
            [
                _ab((2, ("Zn", "Cd", "Be", "Mg")), (-2, _CHALCOGENIDES)),
                _ab((3, ("Al", "Ga", "In")), (-3, ("N",))),
            ],
        ),
        _proto(
            "perovskite", "Pm-3m",
            [("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5))]
            + [("X", p) for p in [(0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]],
            ("B", "X"), 1.0,
            [
                {"A": (2, ("Ca", "Sr", "Ba", "Pb")), "B": (4, ("Ti", "Zr", "Hf", "Sn")),
                 "X": (-2, ("O",))},
                {"A": (1, ("K", "Rb", "Cs")), "B": (2, ("Mg", "Zn", "Mn", "Ni", "Ca")),
                 "X": (-1, ("F", "Cl"))},
                {"A": (3, ("La", "Y")), "B": (3, ("Al", "Ga", "Sc", "Cr", "Fe")),
                 "X": (-2, ("O",))},
            ],
        ),
        _proto(
            "fluorite", "Fm-3m",
            [("A", p) for p in _FCC]
            + [("X", p) for p in itertools.product((0.25, 0.75), repeat=3)],
            ("A", "X"), 1.0,
            [
                _ab((2, ("Ca", "Sr", "Ba", "Cd", "Pb")), (-1, ("F", "Cl"))),
                _ab((4, ("Zr", "Hf", "Ce", "Th", "U")), (-2, ("O",))),
            ],
        ),
        _proto(
            "rutile", "P4_2/mnm",
            [
                ("A", (0, 0, 0)), ("A", (0.5, 0.5, 0.5)),
                ("X", (u, u, 0)), ("X", (1 - u, 1 - u, 0)),
                ("X", (0.5 + u, 0.5 - u, 0.5)), ("X", (0.5 - u, 0.5 + u, 0.5)),
            ],
            ("A", "X"), 1.0,
            [
                _ab((4, ("Ti", "Sn", "Ge", "Mn", "Ru", "Ir", "Pb")), (-2, ("O",))),
                _ab((2, ("Mg", "Zn", "Ni", "Co", "Fe", "Mn")), (-1, ("F",))),
            ],
        ),
    ]
    # fmt: on
    return {p.name: p for p in protos}


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


def supercell_options(n_sites: int, min_atoms: int, max_atoms: int) -> list[tuple[int, ...]]:
    """Diagonal supercell multiplicities (each 1..4) giving ``min_atoms..max_atoms`` atoms."""
    grid = itertools.product(range(1, 5), repeat=3)
    return [m for m in grid if min_atoms <= n_sites * int(np.prod(m)) <= max_atoms]


@dataclass(frozen=True)
class _Template:
    """A prototype supercell, cached: coordinates, sites per role, lattice for ``d = 1``."""

    frac: np.ndarray
    role_sites: tuple[tuple[str, tuple[int, ...]], ...]
    unit_lattice: np.ndarray


@lru_cache(maxsize=1024)
def _template(name: str, mult: tuple[int, ...]) -> _Template:
    proto = prototypes()[name]
    shifts = np.array(list(itertools.product(*(range(m) for m in mult))), dtype=np.float64)
    big = (proto.frac_coords[None, :, :] + shifts[:, None, :]) / np.asarray(mult, float)
    roles = list(proto.roles) * len(shifts)
    role_sites = tuple(
        (role, tuple(i for i, r in enumerate(roles) if r == role)) for role in dict.fromkeys(roles)
    )
    unit = proto.lattice(proto.bond_scale) * np.asarray(mult, dtype=np.float64)[:, None]
    return _Template(big.reshape(-1, 3), role_sites, unit)


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
    t: _Template, family: Family, u: np.ndarray, substitution: float
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
    t = _template(proto.name, tuple(mult))
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
    reach = np.ceil(cutoff * np.linalg.norm(np.linalg.inv(lattice), axis=0)).astype(int) + 1
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
