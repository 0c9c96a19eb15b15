"""Structures as a Python user holds them: pymatgen ``Structure``, ASE ``Atoms``, files, records.

:func:`records_from_objects` turns one such object or a sequence of them into a
:class:`~tlsearch.structures.records.LoadResult`, each item checked like every loader's records.
Unlike a dataset on disk, where unusable records are dropped with their reasons, objects passed
in memory are expected to give one result each: by default the first unusable one raises an
error naming its position, its id and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from tlsearch.structures.ase_io import is_atoms, raw_from_ase
from tlsearch.structures.records import LoadResult, Rejection, StructureRecord
from tlsearch.structures.validate import (
    InvalidRecordError,
    RawRecord,
    raw_from_structure,
    validate_records,
)

#: What :func:`records_from_objects` accepts per item, in words (used in error messages).
ACCEPTED_OBJECTS = (
    "a pymatgen Structure, an ASE Atoms, a CIF/POSCAR file path, a jarvis atoms dict or a "
    "tlsearch StructureRecord"
)

Errors = Literal["raise", "skip"]


def is_structure_object(obj: object) -> bool:
    """Whether ``obj`` is one in-memory structure (not a data spec, not a sequence of them)."""
    return (
        isinstance(obj, StructureRecord)
        or is_atoms(obj)
        or (hasattr(obj, "lattice") and hasattr(obj, "frac_coords"))
    )


def _raw(rid: str, item: object) -> RawRecord:
    """One item as a raw record, still to be checked."""
    if isinstance(item, StructureRecord):
        return RawRecord(rid, item.lattice, item.frac_coords, list(item.species), item.targets)
    if is_atoms(item):
        return raw_from_ase(rid, item, {})  # type: ignore[arg-type]
    if hasattr(item, "lattice") and hasattr(item, "frac_coords"):
        return raw_from_structure(rid, item, {})
    if isinstance(item, (str, Path)):
        from tlsearch.structures.id_prop import read_structure_file

        path = Path(item)
        if not path.is_file():
            raise InvalidRecordError(f"no such structure file: {path}")
        return raw_from_structure(rid, read_structure_file(path), {})
    if isinstance(item, Mapping) and "lattice_mat" in item:
        from tlsearch.structures.jarvis_json import raw_from_atoms

        return raw_from_atoms(rid, item, {})
    raise InvalidRecordError(f"a {type(item).__name__} is not a structure ({ACCEPTED_OBJECTS})")


def default_id(index: int, item: object) -> str:
    """An item's id when none is given: a record's id, a file's name, else its position."""
    if isinstance(item, StructureRecord):
        return item.id
    if isinstance(item, (str, Path)):
        return Path(item).name
    return str(index)


def records_from_objects(
    items: object | Sequence[object],
    ids: Sequence[str] | None = None,
    *,
    errors: Errors = "raise",
    source: str = "structures",
) -> LoadResult:
    """Structures held in memory (or named by file paths) as a :class:`LoadResult`.

    Args:
        items: one structure or a sequence of them, each :data:`ACCEPTED_OBJECTS`.
        ids: one id per item (default: see :func:`default_id`); duplicates are refused.
        errors: ``"raise"``: the first unusable item raises; ``"skip"``: it is left out and
            listed in ``rejected`` with its reason.
        source: label used in messages.

    Raises:
        ValueError: ``ids`` of another length; with ``errors="raise"``, an unusable item
            (``structures[3] (id 'x'): unknown element 'Xx'``); with ``"skip"``, none usable.
    """
    seq = [items] if is_structure_object(items) or isinstance(items, Mapping) else list(items)  # type: ignore[call-overload]
    if ids is not None and len(ids) != len(seq):
        raise ValueError(f"{source}: {len(ids)} ids for {len(seq)} structures")
    names = [str(ids[i]) if ids is not None else default_id(i, x) for i, x in enumerate(seq)]
    if errors == "raise":
        _check_unique(names, source)
    raws: list[RawRecord | Rejection] = []
    for index, (rid, item) in enumerate(zip(names, seq, strict=True)):
        try:
            raw = _raw(rid, item)
        except (InvalidRecordError, ValueError) as exc:
            raws.append(Rejection(rid, str(exc)))
            _maybe_raise(errors, source, index, rid, str(exc))
            continue
        raws.append(raw)
    result = validate_records(raws, source)
    if errors == "raise" and result.rejected:
        first = result.rejected[0]
        _maybe_raise(errors, source, names.index(first.id), first.id, first.reason)
    return result


def _check_unique(names: list[str], source: str) -> None:
    seen: dict[str, int] = {}
    for index, rid in enumerate(names):
        if rid in seen:
            raise ValueError(
                f"{source}[{index}] (id {rid!r}): duplicate id (also {source}[{seen[rid]}]); "
                "pass ids=[...] with one id per structure"
            )
        seen[rid] = index


def _maybe_raise(errors: Errors, source: str, index: int, rid: str, reason: str) -> None:
    if errors == "raise":
        raise ValueError(f"{source}[{index}] (id {rid!r}): {reason}")
