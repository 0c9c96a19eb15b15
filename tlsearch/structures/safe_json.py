"""Read matminer-format DataFrame JSON without letting the file choose what code runs.

matminer writes a table as ``{"columns": [...], "index": [...], "data": [[...], ...]}`` with
pymatgen objects as monty dicts (``{"@module": "pymatgen.core.structure", "@class":
"Structure", ...}``). monty's decoder imports whatever module such a dict names, so a data file
could make any installed module's class run on load. Here the whole document is parsed as plain
JSON first, every ``@module``/``@class`` (and ``@callable``) pair in it is checked against
:data:`ALLOWED_CLASSES` (the structure classes and what they nest), and only then decoded; a
file naming anything else is refused, naming the record, the column and the class.
"""

from __future__ import annotations

import bz2
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: ``(@module, @class)`` pairs a data file may name: pymatgen's structure classes and the
#: objects a structure's dict nests (lattice, sites, species, site properties as numpy arrays).
ALLOWED_CLASSES: frozenset[tuple[str, str]] = frozenset(
    {
        ("pymatgen.core.structure", "Structure"),
        ("pymatgen.core.structure", "IStructure"),
        ("pymatgen.core.lattice", "Lattice"),
        ("pymatgen.core.sites", "PeriodicSite"),
        ("pymatgen.core.sites", "Site"),
        ("pymatgen.core.periodic_table", "Element"),
        ("pymatgen.core.periodic_table", "Species"),
        ("pymatgen.core.periodic_table", "Specie"),
        ("pymatgen.core.periodic_table", "DummySpecies"),
        ("pymatgen.core.periodic_table", "DummySpecie"),
        ("pymatgen.core.composition", "Composition"),
        ("numpy", "array"),
    }
)


class UnsafeObjectError(ValueError):
    """A data file names a class outside :data:`ALLOWED_CLASSES`."""


def _open(path: Path) -> Any:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _named_classes(value: Any, where: tuple[Any, ...] = ()) -> Iterator[tuple[tuple, str]]:
    """``(path, "module.Class")`` of every monty reference below ``value`` that is not allowed."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, where)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            if "@module" in node or "@class" in node or "@callable" in node:
                module = node.get("@module")
                cls = node.get("@class", node.get("@callable"))
                if "@callable" in node or (module, cls) not in ALLOWED_CLASSES:
                    yield at, f"{module}.{cls}"
            stack.extend((v, (*at, k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*at, i)) for i, v in enumerate(node))


def _describe(document: Any, at: tuple[Any, ...]) -> str:
    """Where ``at`` points in a matminer table: the record's index value and column."""
    if (
        isinstance(document, dict)
        and len(at) >= 3
        and at[0] == "data"
        and isinstance(at[1], int)
        and isinstance(at[2], int)
    ):
        index = document.get("index")
        columns = document.get("columns")
        record = index[at[1]] if isinstance(index, list) and at[1] < len(index) else at[1]
        column = columns[at[2]] if isinstance(columns, list) and at[2] < len(columns) else at[2]
        return f"record {record!r} (row {at[1]}), column {column!r}"
    return "at " + "/".join(str(p) for p in at) if at else "at the top level"


def check_allowed(document: Any, source: str) -> None:
    """Raise :class:`UnsafeObjectError` when ``document`` names a class not allowed.

    Raises:
        UnsafeObjectError: names ``source``, the record and the class.
    """
    for at, name in _named_classes(document):
        allowed = sorted(f"{m}.{c}" for m, c in ALLOWED_CLASSES)
        raise UnsafeObjectError(
            f"{source}: {_describe(document, at)} holds an object of class {name!r}; tlsearch "
            "decodes only structure classes from data files (decoding other classes would import "
            f"and run code the file names). Allowed: {', '.join(allowed)}"
        )


def decode_allowed(document: Any, source: str) -> Any:
    """``document`` with its (checked) monty dicts decoded into pymatgen/numpy objects."""
    from monty.json import MontyDecoder

    check_allowed(document, source)
    return MontyDecoder().process_decoded(document)


def read_matminer_json(path: str | Path) -> pd.DataFrame:
    """A matminer-format DataFrame JSON file (``.json``, ``.json.gz``, ``.json.bz2``), decoded
    with only :data:`ALLOWED_CLASSES`.

    Raises:
        UnsafeObjectError: the file names another class (nothing was decoded).
        ValueError: not JSON, or not a table (names the file).
    """
    import pandas as pd

    path = Path(path)
    try:
        with _open(path) as fh:
            document = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({type(exc).__name__}: {exc})") from exc
    decoded = decode_allowed(document, str(path))
    if isinstance(decoded, dict) and set(decoded) == {"data", "columns", "index"}:
        return pd.DataFrame(**decoded)
    if isinstance(decoded, (list, dict)):
        return pd.DataFrame(decoded)
    kind = type(decoded).__name__
    raise ValueError(f"{path}: expected a table (matminer DataFrame JSON), got {kind}")
