"""Load jarvis-tools "dataset array" JSON files (``.json`` or ``.json.gz``).

Each file is a JSON list of records like::

    {"jid": 439, "target": -1.0,
     "atoms": {"lattice_mat": [[...], [...], [...]], "coords": [[...], ...],
               "elements": ["Ce", "Mg", ...], "cartesian": false, ...}}

This is the format of the paper's data files and of ``jarvis.db.figshare.data(...)``.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tlsearch.structures.records import LoadResult, Rejection
from tlsearch.structures.validate import RawRecord, validate_records

logger = logging.getLogger(__name__)

TargetKeys = Sequence[str] | Mapping[str, str]
"""Target keys to read: a list (names = keys) or a mapping file key -> target name."""


def read_json(path: str | Path) -> Any:
    """Parse a ``.json`` or gzip-compressed ``.json.gz`` file.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the content is not valid JSON (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from exc


def _target_map(target_keys: TargetKeys) -> dict[str, str]:
    if isinstance(target_keys, str):
        return {target_keys: target_keys}
    if isinstance(target_keys, Mapping):
        return {str(k): str(v) for k, v in target_keys.items()}
    return {str(k): str(k) for k in target_keys}


def record_id(entry: Mapping[str, Any], index: int, id_key: str = "jid") -> str:
    """The record id: ``entry[id_key]``, else ``entry["id"]``, else the row index."""
    for key in (id_key, "id"):
        value = entry.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return str(index)


def raw_from_atoms(rid: str, atoms: object, targets: Mapping[str, Any]) -> RawRecord | Rejection:
    """Turn a jarvis ``atoms`` dict into a :class:`RawRecord` (or a rejection naming the field)."""
    if not isinstance(atoms, Mapping):
        return Rejection(rid, f"'atoms' is not an object (got {type(atoms).__name__})")
    for key in ("lattice_mat", "coords", "elements"):
        if key not in atoms:
            return Rejection(rid, f"'atoms' has no {key!r}")
    return RawRecord(
        id=rid,
        lattice=atoms["lattice_mat"],
        coords=atoms["coords"],
        species=atoms["elements"],
        targets=targets,
        cartesian=bool(atoms.get("cartesian", False)),
    )


def iter_raw_jarvis(
    entries: Sequence[Any],
    target_keys: TargetKeys = ("target",),
    id_key: str = "jid",
    require_targets: bool = True,
) -> Iterator[RawRecord | Rejection]:
    """Yield raw records (or rejections) from a list of jarvis-style entries."""
    tmap = _target_map(target_keys)
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            yield Rejection(f"row {index}", f"record is not an object (got {type(entry).__name__})")
            continue
        rid = record_id(entry, index, id_key)
        missing = [key for key in tmap if key not in entry]
        if missing and require_targets:
            yield Rejection(rid, f"missing target {missing[0]!r}")
            continue
        targets = {name: entry[key] for key, name in tmap.items() if key in entry}
        if "atoms" not in entry:
            yield Rejection(rid, "record has no 'atoms'")
            continue
        yield raw_from_atoms(rid, entry["atoms"], targets)


def records_from_jarvis_list(
    entries: object,
    source: str,
    target_keys: TargetKeys = ("target",),
    id_key: str = "jid",
    require_targets: bool = True,
) -> LoadResult:
    """Validate an in-memory jarvis dataset array (list of record dicts)."""
    if not isinstance(entries, list):
        raise ValueError(
            f"{source}: expected a JSON list of records (jarvis dataset array), "
            f"got {type(entries).__name__}"
        )
    tmap = _target_map(target_keys)
    required = list(tmap.values()) if require_targets else []
    raw = iter_raw_jarvis(entries, tmap, id_key, require_targets)
    return validate_records(raw, source, required_targets=required)


def load_jarvis_json(
    path: str | Path,
    id_key: str = "jid",
    target_keys: TargetKeys = ("target",),
    require_targets: bool = True,
) -> LoadResult:
    """Load a jarvis-style dataset array from ``path`` (``.json`` or ``.json.gz``).

    Args:
        path: the file.
        id_key: key holding the record id (falls back to ``"id"``, then the row index).
        target_keys: keys of the targets to read; a mapping renames them (file key -> name).
        require_targets: reject records missing a target (else keep them without it).

    Returns:
        The accepted records and the rejections.

    Raises:
        ValueError: unreadable file, not a list, or no usable record.
    """
    data = read_json(path)
    return records_from_jarvis_list(data, str(path), target_keys, id_key, require_targets)
