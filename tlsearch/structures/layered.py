"""A generated STAND-IN for JARVIS-DFT 2D: layered structures with a band-gap-like target.

This is not JARVIS ``dft_2d`` (nor any real data); it lets a rehearsal of ``ood_2d.yaml`` run
where the real set is absent. Data spec: ``generated2d:N[:SEED]`` (ids ``gen2d-00000`` ...).

Each structure is one layer, periodic in the a-b plane, with a vacuum gap of
:attr:`Layered2DConfig.vacuum` Angstrom along c (c is normal to the a-b plane):

- **monolayers**: planar honeycomb AX (h-BN-like), 1T-MX2 (octahedral, CdI2-like) and 2H-MX2
  (trigonal prismatic, MoS2-like), as in-plane supercells;
- **slabs**: one or two conventional cells of the bulk prototypes of
  :mod:`tlsearch.structures.prototypes` (rock salt, CsCl, ...), cut along c.

Species, in-plane strain, substitution and rattling are drawn as in
:mod:`tlsearch.structures.generate`, from a seeded generator per structure (structure ``i``
does not depend on ``n``).

Target ``"target"`` (eV, band-gap-like, not physics): from the cation-anion pairs within
1.3 bond lengths, ``raw = 2.5 * max(0, mean|chi_cation - chi_anion| - 0.6) * 2.5 A / mean pair
length``, widened by ``1 + 0.5 exp(-thickness / 4 A)`` for thin layers (confinement) and
saturated as ``8 tanh(raw / 8)`` (0-8 eV, like JARVIS 2D gaps); chi is Pauling's
electronegativity. Weakly ionic layers (about a quarter) come out as zero (metal-like).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tlsearch.structures.generate import _assign_species, _pair_vectors
from tlsearch.structures.prototypes import (
    IONIC_RADII,
    Family,
    SupercellTemplate,
    prototypes,
    supercell_options,
    supercell_template,
)
from tlsearch.structures.records import LoadResult
from tlsearch.structures.validate import RawRecord, validate_records

logger = logging.getLogger(__name__)

STAND_IN_NOTE = "generated 2D stand-in, not JARVIS dft_2d"


@dataclass(frozen=True)
class Layer:
    """A layer motif or bulk prototype: template for bond length 1, families, bond roles.

    Attributes:
        name: ``honeycomb``, ``1T-MX2``, ``2H-MX2`` or ``slab-<prototype>``.
        sites: (n, 3) coordinates in the unit cell of ``unit_lattice`` (monolayers: in-plane
            fractional x, y and height z in bond lengths, c being a unit z vector).
        roles: role of every site.
        unit_lattice: lattice rows for bond length 1 (a and b in the x-y plane; slabs use the
            prototype's supercell template, which includes its bond scale).
        bond: (cation role, anion role) whose radii sum gives the bond length ``d``.
        families: charge-balanced species families.
        slab_layers: repeats along c allowed (bulk slabs: 1 or 2; monolayers: 1).
    """

    name: str
    sites: np.ndarray
    roles: tuple[str, ...]
    unit_lattice: np.ndarray
    bond: tuple[str, str]
    families: tuple[Family, ...]
    slab_layers: tuple[int, ...] = (1,)


def _hex_unit(a: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, 1.0]])


def _monolayer(
    name: str, sites: list[tuple[str, tuple[float, float, float]]], a: float, families: list
) -> Layer:
    roles = tuple(role for role, _ in sites)
    coords = np.array([xyz for _, xyz in sites], dtype=np.float64)
    return Layer(name, coords, roles, _hex_unit(a), ("A", "X"), tuple(families))


def _ax(cat: tuple[int, tuple[str, ...]], an: tuple[int, tuple[str, ...]]) -> Family:
    return {"A": cat, "X": an}


@lru_cache(maxsize=1)
def layers() -> dict[str, Layer]:
    """The layer motifs and bulk slabs by name."""
    h_oct = 1 / np.sqrt(3.0)  # 1T: ideal octahedron, a = sqrt(2) d, height a / sqrt(6)
    a_tp = 1.31  # 2H: MoS2-like a / d
    h_tp = float(np.sqrt(1.0 - a_tp**2 / 3))
    mx2 = [
        _ax((4, ("Mo", "W", "Nb", "Ta")), (-2, ("S", "Se", "Te"))),
        _ax((4, ("Ti", "Zr", "Hf", "Sn", "Pt")), (-2, ("S", "Se", "Te"))),
    ]
    # fmt: off
    motifs = [
        _monolayer(
            "honeycomb", [("A", (0, 0, 0)), ("X", (1 / 3, 2 / 3, 0))], np.sqrt(3.0),
            [
                _ax((3, ("B", "Al", "Ga", "In")), (-3, ("N", "P", "As"))),
                _ax((2, ("Be", "Mg", "Zn", "Cd")), (-2, ("O", "S", "Se"))),
            ],
        ),
        _monolayer(
            "1T-MX2",
            [("A", (0, 0, 0)), ("X", (1 / 3, 2 / 3, h_oct)), ("X", (2 / 3, 1 / 3, -h_oct))],
            np.sqrt(2.0), [mx2[1], mx2[0]],
        ),
        _monolayer(
            "2H-MX2",
            [("A", (0, 0, 0)), ("X", (1 / 3, 2 / 3, h_tp)), ("X", (1 / 3, 2 / 3, -h_tp))],
            a_tp, mx2,
        ),
    ]
    # fmt: on
    slabs = [
        Layer(
            f"slab-{p.name}",
            p.frac_coords,
            p.roles,
            p.lattice(p.bond_scale),
            p.bond,
            p.families,
            slab_layers=(1, 2),
        )
        for p in prototypes().values()
    ]
    return {layer.name: layer for layer in [*motifs, *slabs]}


class Layered2DConfig(BaseModel):
    """Options of :func:`generate_layered_dataset`."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(gt=0, description="number of structures")
    seed: int = 0
    max_atoms: int = Field(24, ge=3, description="largest cell, in atoms")
    vacuum: tuple[float, float] = Field((10.0, 15.0), description="vacuum gap range (A)")
    monolayer_fraction: float = Field(0.6, ge=0.0, le=1.0)
    strain: float = Field(0.03, ge=0.0, lt=0.5, description="max |in-plane strain|")
    substitution: float = Field(0.25, ge=0.0, le=1.0, description="per-site swap probability")
    rattle: float = Field(0.02, ge=0.0, le=0.3, description="Gaussian displacement (A)")

    @model_validator(mode="after")
    def _vacuum_range(self) -> Layered2DConfig:
        low, high = self.vacuum
        if not 4.0 <= low <= high:
            raise ValueError(f"vacuum = {self.vacuum}: need 4 <= low <= high (Angstrom)")
        return self


def _template(layer: Layer, mult: tuple[int, int, int]) -> SupercellTemplate:
    """``layer`` repeated ``mult`` times (monolayers: in-plane only)."""
    if layer.name.startswith("slab-"):
        return supercell_template(layer.name.removeprefix("slab-"), mult)
    return _monolayer_template(layer.name, mult[:2])


@lru_cache(maxsize=64)
def _monolayer_template(name: str, mult: tuple[int, int]) -> SupercellTemplate:
    layer = layers()[name]
    shifts = np.array([(i, j, 0) for i in range(mult[0]) for j in range(mult[1])], float)
    scale = np.array([mult[0], mult[1], 1.0])
    frac = ((layer.sites[None, :, :] + shifts[:, None, :]) / scale).reshape(-1, 3)
    roles = list(layer.roles) * len(shifts)
    role_sites = tuple(
        (role, tuple(i for i, r in enumerate(roles) if r == role)) for role in dict.fromkeys(roles)
    )
    return SupercellTemplate(frac, role_sites, layer.unit_lattice * scale[:, None])


def _options(layer: Layer, max_atoms: int) -> list[tuple[int, int, int]]:
    grid = supercell_options(len(layer.roles), 1, max_atoms)
    return [m for m in grid if m[0] <= 3 and m[1] <= 3 and m[2] in layer.slab_layers]


def _with_vacuum(
    a: np.ndarray, b: np.ndarray, cart: np.ndarray, vacuum: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lattice with c normal to a-b holding the slab plus ``vacuum``; fractional coordinates."""
    normal = np.cross(a, b)
    normal /= np.linalg.norm(normal)
    height = cart @ normal
    thickness = float(height.max() - height.min())
    cart = cart + np.outer(vacuum / 2 - height.min(), normal)
    lattice = np.stack([a, b, normal * (thickness + vacuum)])
    return lattice, cart @ np.linalg.inv(lattice), thickness


@dataclass
class LayeredStructure:
    """One sampled layer before its target is computed."""

    kind: str
    lattice: np.ndarray
    frac_coords: np.ndarray
    species: tuple[str, ...]
    oxidation_states: np.ndarray
    bond: float
    thickness: float


def sample_layer(rng: np.random.Generator, layer: Layer, cfg: Layered2DConfig) -> LayeredStructure:
    """Sample one strained, substituted, rattled layer of ``layer`` with a vacuum gap."""
    options = _options(layer, cfg.max_atoms)
    t = _template(layer, options[rng.integers(len(options))])
    n, n_roles = len(t.frac), len(t.role_sites)
    u = rng.random(1 + 3 + 1 + n_roles + 2 * n)
    family = layer.families[int(u[0] * len(layer.families))]
    species, ox, main = _assign_species(t, family, u[5:], cfg.substitution)
    cat, an = layer.bond
    d = IONIC_RADII[(main[cat], family[cat][0])] + IONIC_RADII[(main[an], family[an][0])]
    e = (2.0 * u[1:4] - 1.0) * cfg.strain
    in_plane = np.array([[1 + e[0], e[2] / 2, 0.0], [e[2] / 2, 1 + e[1], 0.0], [0.0, 0.0, 1.0]])
    lattice = d * t.unit_lattice  # monolayers: c = d, so heights are in bond lengths
    cart = t.frac @ lattice @ in_plane
    if cfg.rattle > 0:
        cart = cart + rng.normal(0.0, cfg.rattle, size=cart.shape)
    vacuum = cfg.vacuum[0] + u[4] * (cfg.vacuum[1] - cfg.vacuum[0])
    a, b = lattice[0] @ in_plane, lattice[1] @ in_plane
    cell, frac, thickness = _with_vacuum(a, b, cart, vacuum)
    return LayeredStructure(
        layer.name, cell, frac, tuple(species), np.asarray(ox, float), d, thickness
    )


@lru_cache(maxsize=128)
def _electronegativity(symbol: str) -> float:
    from pymatgen.core import Element

    return float(Element(symbol).X)


def band_gap_like(g: LayeredStructure) -> float:
    """The stand-in target (eV) of one layer; see the module docstring."""
    i, j, r = _pair_vectors(g.lattice, g.frac_coords, 1.3 * g.bond)
    pairs = (g.oxidation_states[i] > 0) & (g.oxidation_states[j] < 0)
    if not pairs.any():
        return 0.0
    chi = np.array([_electronegativity(s) for s in g.species])
    ionicity = float(np.mean(np.abs(chi[i[pairs]] - chi[j[pairs]])))
    length = float(np.mean(r[pairs]))
    confinement = 1.0 + 0.5 * np.exp(-g.thickness / 4.0)
    raw = 2.5 * max(0.0, ionicity - 0.6) * (2.5 / length) * confinement
    return float(8.0 * np.tanh(raw / 8.0))


def _iter_layered(cfg: Layered2DConfig) -> Iterator[RawRecord]:
    table = layers()
    usable = [layer for layer in table.values() if _options(layer, cfg.max_atoms)]
    monolayers = [layer for layer in usable if not layer.name.startswith("slab-")]
    slabs = [layer for layer in usable if layer.name.startswith("slab-")]
    for index in range(cfg.n):
        rng = np.random.default_rng((cfg.seed, index, 2))
        pool = monolayers if (rng.random() < cfg.monolayer_fraction or not slabs) else slabs
        g = sample_layer(rng, pool[rng.integers(len(pool))], cfg)
        yield RawRecord(
            id=f"gen2d-{index:05d}",
            lattice=g.lattice,
            coords=g.frac_coords,
            species=g.species,
            targets={"target": band_gap_like(g)},
        )


def generate_layered_dataset(n: int, seed: int = 0, **options: object) -> LoadResult:
    """Generate ``n`` layered structures, the stand-in for JARVIS dft_2d (``generated2d:``).

    Args:
        n: number of structures (ids ``gen2d-00000`` ...).
        seed: random seed; the same seed gives the same dataset.
        **options: further :class:`Layered2DConfig` fields.
    """
    cfg = Layered2DConfig(n=n, seed=seed, **options)
    logger.info("%s: %d layered structures (seed %d)", STAND_IN_NOTE, n, seed)
    return validate_records(_iter_layered(cfg), f"generated2d:{n}:{seed} ({STAND_IN_NOTE})")
