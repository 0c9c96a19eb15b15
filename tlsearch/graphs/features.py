"""CGCNN atom features (92 per element), as alignn's ``atom_features="cgcnn"``.

The table is read once from jarvis-tools' ``atom_init.json`` (what
``jarvis.core.specie.get_node_attributes`` returns, the source alignn uses), and indexed by
atomic number, so a graph stores one small integer per atom.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

# Element symbols by atomic number (index 0 unused): H .. Lr, the range jarvis covers.
SYMBOLS: tuple[str, ...] = [
    "X",
    "H",
    "He",
    "Li",
    "Be",
    "B",
    "C",
    "N",
    "O",
    "F",
    "Ne",
    "Na",
    "Mg",
    "Al",
    "Si",
    "P",
    "S",
    "Cl",
    "Ar",
    "K",
    "Ca",
    "Sc",
    "Ti",
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Zn",
    "Ga",
    "Ge",
    "As",
    "Se",
    "Br",
    "Kr",
    "Rb",
    "Sr",
    "Y",
    "Zr",
    "Nb",
    "Mo",
    "Tc",
    "Ru",
    "Rh",
    "Pd",
    "Ag",
    "Cd",
    "In",
    "Sn",
    "Sb",
    "Te",
    "I",
    "Xe",
    "Cs",
    "Ba",
    "La",
    "Ce",
    "Pr",
    "Nd",
    "Pm",
    "Sm",
    "Eu",
    "Gd",
    "Tb",
    "Dy",
    "Ho",
    "Er",
    "Tm",
    "Yb",
    "Lu",
    "Hf",
    "Ta",
    "W",
    "Re",
    "Os",
    "Ir",
    "Pt",
    "Au",
    "Hg",
    "Tl",
    "Pb",
    "Bi",
    "Po",
    "At",
    "Rn",
    "Fr",
    "Ra",
    "Ac",
    "Th",
    "Pa",
    "U",
    "Np",
    "Pu",
    "Am",
    "Cm",
    "Bk",
    "Cf",
    "Es",
    "Fm",
    "Md",
    "No",
    "Lr",
]
ATOMIC_NUMBER: dict[str, int] = {s: z for z, s in enumerate(SYMBOLS) if z > 0}
NUM_FEATURES = 92
CGCNN_FILE = "atom_init.json"  # in the jarvis.core package


def atomic_numbers(species: tuple[str, ...] | list[str]) -> np.ndarray:
    """Atomic numbers of element symbols; KeyError names an unknown symbol."""
    try:
        return np.array([ATOMIC_NUMBER[s] for s in species], dtype=np.int16)
    except KeyError as exc:
        raise KeyError(f"unknown element {exc.args[0]!r}") from None


@lru_cache(maxsize=1)
def cgcnn_table() -> np.ndarray:
    """(104, 92) float32: row Z holds element Z's CGCNN features (row 0 is zeros).

    Read from jarvis-tools' ``jarvis/core/atom_init.json``, the file behind
    ``jarvis.core.specie.get_node_attributes(symbol, atom_features="cgcnn")`` (alignn's
    features), once, without importing ``jarvis.core.specie`` (0.4-0.5 s per process, and it
    re-reads the JSON for every element). Like that function, an element missing from the
    file (Z > 100) gets element 100's features.
    """
    text = resources.files("jarvis.core").joinpath(CGCNN_FILE).read_text(encoding="utf-8")
    features = json.loads(text)
    table = np.zeros((len(SYMBOLS), NUM_FEATURES), dtype=np.float32)
    for z in range(1, len(SYMBOLS)):
        table[z] = np.asarray(features.get(str(z), features["100"]), dtype=np.float32)
    return table
