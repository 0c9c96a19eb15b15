"""Crystal prototypes for the generated datasets: ionic radii, cells and supercell templates.

Seven prototypes (rock salt, CsCl, zinc blende, wurtzite, cubic perovskite, fluorite, rutile),
each a conventional cell with a role per site ("A"/"B" cations, "X" anion), charge-balanced
species families, and a lattice rule that sizes the cell from a cation-anion bond length.
:func:`supercell_template` caches a prototype's diagonal supercell. Sampling species, strain
and properties is :mod:`tlsearch.structures.generate`'s job.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

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
    **{(e, 4): r for e, r in [("Mo", 0.65), ("W", 0.66), ("Nb", 0.68), ("Ta", 0.68)]},
    ("Pt", 4): 0.625,
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


def supercell_options(n_sites: int, min_atoms: int, max_atoms: int) -> list[tuple[int, ...]]:
    """Diagonal supercell multiplicities (each 1..4) giving ``min_atoms..max_atoms`` atoms."""
    grid = itertools.product(range(1, 5), repeat=3)
    return [m for m in grid if min_atoms <= n_sites * int(np.prod(m)) <= max_atoms]


@dataclass(frozen=True)
class SupercellTemplate:
    """A prototype supercell, cached: coordinates, sites per role, lattice for ``d = 1``."""

    frac: np.ndarray
    role_sites: tuple[tuple[str, tuple[int, ...]], ...]
    unit_lattice: np.ndarray


@lru_cache(maxsize=1024)
def supercell_template(name: str, mult: tuple[int, ...]) -> SupercellTemplate:
    """Prototype ``name`` repeated ``mult`` times along the three lattice vectors."""
    proto = prototypes()[name]
    shifts = np.array(list(itertools.product(*(range(m) for m in mult))), dtype=np.float64)
    big = (proto.frac_coords[None, :, :] + shifts[:, None, :]) / np.asarray(mult, float)
    roles = list(proto.roles) * len(shifts)
    role_sites = tuple(
        (role, tuple(i for i, r in enumerate(roles) if r == role)) for role in dict.fromkeys(roles)
    )
    unit = proto.lattice(proto.bond_scale) * np.asarray(mult, dtype=np.float64)[:, None]
    return SupercellTemplate(big.reshape(-1, 3), role_sites, unit)
