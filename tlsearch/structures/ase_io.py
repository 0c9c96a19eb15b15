"""ASE in and out: ``Atoms`` objects, ASE databases (``.db``) and extended XYZ files.

ASE is how most atomistic tools hand structures around. Here an ``Atoms`` becomes a
:class:`~tlsearch.structures.validate.RawRecord` (cell rows as lattice vectors, Cartesian
positions, chemical symbols), and back with :func:`to_atoms`.

A property is looked up by its key in this order: an ASE database row's key-value pairs and
standard columns (``energy``...; ``row.get(key)``), or an ``Atoms``' ``info`` and then its
calculator's results (extended XYZ stores ``energy`` there). Loaders name the record and the
key of anything they cannot use, and never stop at one bad record (see
:func:`~tlsearch.structures.validate.validate_records`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlsearch.structures.records import LoadResult, Rejection, StructureRecord, finite_target
from tlsearch.structures.validate import InvalidRecordError, RawRecord, validate_records

if TYPE_CHECKING:
    from ase import Atoms

logger = logging.getLogger(__name__)

#: File names read as extended XYZ (one structure per frame).
EXTXYZ_SUFFIXES = (".extxyz", ".xyz")
#: File names read as an ASE database (SQLite).
ASE_DB_SUFFIXES = (".db",)

_KEYS_SHOWN = 12


def is_atoms(obj: object) -> bool:
    """Whether ``obj`` is an ASE ``Atoms`` (checked without importing ASE for other objects)."""
    return type(obj).__module__.startswith("ase.") and hasattr(obj, "get_chemical_symbols")


def raw_from_ase(rid: object, atoms: Atoms, targets: Mapping[str, Any]) -> RawRecord:
    """An ASE ``Atoms`` as a :class:`RawRecord` (Cartesian positions, cell rows as lattice).

    Raises:
        InvalidRecordError: the ``Atoms`` has no 3D cell (a molecule: a crystal graph needs a
            periodic cell).
    """
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if atoms.cell.rank < 3:
        pbc = "".join("T" if p else "F" for p in atoms.pbc)
        raise InvalidRecordError(
            f"ASE Atoms has no 3D cell (cell rank {atoms.cell.rank}, pbc={pbc}): a crystal "
            "graph needs three lattice vectors (set atoms.cell, e.g. with vacuum around a "
            "molecule or slab)"
        )
    return RawRecord(
        id=rid,
        lattice=cell,
        coords=np.asarray(atoms.positions, dtype=np.float64),
        species=atoms.get_chemical_symbols(),
        targets=targets,
        cartesian=True,
    )


def to_atoms(record: StructureRecord) -> Atoms:
    """The record as a periodic ASE ``Atoms``; its targets and id go into ``info``."""
    from ase import Atoms

    atoms = Atoms(
        symbols=list(record.species),
        scaled_positions=record.frac_coords,
        cell=record.lattice,
        pbc=True,
    )
    atoms.info.update(record.targets)
    atoms.info["id"] = record.id
    return atoms


def atoms_property(atoms: Atoms, key: str) -> object | None:
    """``atoms.info[key]``, else the calculator's result ``key`` (None when neither has it)."""
    if key in atoms.info:
        return atoms.info[key]
    results = getattr(atoms.calc, "results", None) or {}
    return results.get(key)


def atoms_keys(atoms: Atoms) -> list[str]:
    """The property keys an ``Atoms`` carries (``info`` and calculator results)."""
    results = getattr(atoms.calc, "results", None) or {}
    return sorted({*atoms.info, *results})


def _target_value(rid: str, key: str, value: object, keys: list[str]) -> dict[str, float]:
    """``{"target": value}`` checked, naming the record's key when it is missing or bad."""
    if value is None:
        shown = ", ".join(keys[:_KEYS_SHOWN]) or "none"
        raise InvalidRecordError(f"no property {key!r} (this record has: {shown})")
    try:
        return {"target": finite_target(value)}
    except ValueError as exc:
        raise InvalidRecordError(f"property {key!r}: {exc}") from exc


def _record(
    rid: str,
    atoms: Atoms,
    target: str | None,
    value: object,
    keys: list[str],
    require_targets: bool,
) -> RawRecord | Rejection:
    try:
        targets: dict[str, float] = {}
        if target is not None and (require_targets or value is not None):
            targets = _target_value(rid, target, value, keys)
        return raw_from_ase(rid, atoms, targets)
    except InvalidRecordError as exc:
        return Rejection(rid, str(exc))


def _need_target(path: Path, keys: list[str], what: str) -> ValueError:
    shown = ", ".join(keys[:_KEYS_SHOWN]) or "none"
    return ValueError(
        f"{path}: {what} needs target=<property key> (--target KEY; keys of its first "
        f"record: {shown})"
    )


def load_extxyz(
    path: str | Path,
    target: str | None = None,
    *,
    id_key: str | None = None,
    require_targets: bool = True,
) -> LoadResult:
    """Every frame of an extended XYZ file; ``target`` is the property key (``info``/calc).

    Args:
        path: the file (``.extxyz`` or ``.xyz``).
        target: property key read into the records' ``"target"``.
        id_key: ``info`` key holding each frame's id (default: the frame's index, ``"0"``...).
        require_targets: reject frames without ``target`` (False: keep them without targets).

    Raises:
        FileNotFoundError: no such file. ValueError: unreadable file, no ``target`` when one is
            required, or no usable frame (reasons named per frame).
    """
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        frames = ase.io.read(path, index=":", format="extxyz")
    except Exception as exc:  # ASE raises many exception types for malformed files
        raise ValueError(f"{path}: cannot read extended XYZ ({type(exc).__name__}: {exc})") from exc
    if target is None and require_targets:
        raise _need_target(path, atoms_keys(frames[0]) if frames else [], "an extended XYZ file")

    def rows() -> Iterator[RawRecord | Rejection]:
        for index, atoms in enumerate(frames):
            rid = str(index)
            if id_key is not None:
                if id_key not in atoms.info:
                    yield Rejection(f"frame {index}", f"no {id_key!r} in its info (id_key)")
                    continue
                rid = str(atoms.info[id_key])
            value = atoms_property(atoms, target) if target is not None else None
            yield _record(rid, atoms, target, value, atoms_keys(atoms), require_targets)

    return validate_records(rows(), str(path))


def load_ase_db(
    path: str | Path,
    target: str | None = None,
    *,
    id_key: str | None = None,
    selection: str | None = None,
    require_targets: bool = True,
) -> LoadResult:
    """Every row of an ASE database (``ase.db``, SQLite ``.db``); ``target`` is a row key.

    Args:
        path: the database file.
        target: key read into the records' ``"target"``: a key-value pair or a standard column
            such as ``energy`` (``row.get(key)``).
        id_key: key holding each row's id (default: the row's integer ``id``).
        selection: an ASE query string (``"natoms<20,band_gap>0"``); default every row.
        require_targets: reject rows without ``target`` (False: keep them without targets).

    Raises:
        FileNotFoundError: no such file. ValueError: not a database, no ``target`` when one is
            required, or no usable row (reasons named per row).
    """
    import ase.db

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        rows_found = list(ase.db.connect(str(path), type="db").select(selection))
    except Exception as exc:  # sqlite3/ASE raise many exception types
        raise ValueError(
            f"{path}: cannot read an ASE database ({type(exc).__name__}: {exc})"
        ) from exc
    if target is None and require_targets:
        keys = _row_keys(rows_found[0]) if rows_found else []
        raise _need_target(path, keys, "an ASE database")

    def rows() -> Iterator[RawRecord | Rejection]:
        for row in rows_found:
            rid = str(row.id)
            if id_key is not None:
                if row.get(id_key) is None:
                    yield Rejection(f"row {row.id}", f"no {id_key!r} key (id_key)")
                    continue
                rid = str(row.get(id_key))
            value = row.get(target) if target is not None else None
            yield _record(rid, row.toatoms(), target, value, _row_keys(row), require_targets)

    return validate_records(rows(), str(path))


def _row_keys(row: Any) -> list[str]:
    standard = [k for k in ("energy", "free_energy", "magmom", "charge") if row.get(k) is not None]
    return sorted({*row.key_value_pairs, *standard})
