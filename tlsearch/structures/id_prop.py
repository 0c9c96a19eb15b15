"""Load the ALIGNN folder convention: structure files plus ``id_prop.csv``.

``id_prop.csv`` has no header; each row is ``filename,target[,target2,...]`` with ``filename``
relative to the folder. The record id is the file name as written in the CSV. Targets are
named ``"target"`` when there is one column, else ``"target_0"``, ``"target_1"``, ...

Without ``id_prop.csv`` (prediction), every ``*.cif``, ``POSCAR*`` and ``*.vasp`` file in the
folder is loaded, with no targets.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tlsearch.structures.records import LoadResult, Rejection
from tlsearch.structures.validate import (
    InvalidRecordError,
    RawRecord,
    raw_from_structure,
    validate_records,
)

logger = logging.getLogger(__name__)

ID_PROP_FILE = "id_prop.csv"
STRUCTURE_PATTERNS = ("*.cif", "POSCAR*", "*.vasp")


def read_structure_file(path: Path) -> Any:
    """Parse a CIF/POSCAR file with pymatgen (format from the name, else tried CIF then POSCAR).

    Raises:
        ValueError: when the file cannot be parsed (message names the file).
    """
    from pymatgen.core import Structure

    errors: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF parser warns about rounding etc.
        try:
            return Structure.from_file(path)
        except Exception as exc:  # pymatgen raises many exception types
            errors.append(str(exc) or type(exc).__name__)
        text = path.read_text(errors="replace")
        for fmt in ("cif", "poscar"):
            try:
                return Structure.from_str(text, fmt=fmt)
            except Exception as exc:
                errors.append(f"{fmt}: {str(exc) or type(exc).__name__}")
    raise ValueError(f"cannot parse structure file {path.name!r} ({errors[0]})")


def target_names(n_targets: int) -> list[str]:
    """Default names for ``n_targets`` target columns."""
    return ["target"] if n_targets == 1 else [f"target_{i}" for i in range(n_targets)]


def _raw_from_file(folder: Path, name: str, targets: dict[str, Any]) -> RawRecord | Rejection:
    path = folder / name
    # confined lexically: "../x" and absolute names are refused; a symlink the folder's owner
    # placed in it is followed (their choice, not the CSV's)
    if Path(name).is_absolute() or not Path(os.path.normpath(path)).is_relative_to(
        Path(os.path.normpath(folder))
    ):
        return Rejection(
            name, f"structure file {name!r} is outside {folder} ({ID_PROP_FILE} names files in it)"
        )
    if not path.is_file():
        return Rejection(name, f"structure file {name!r} not found in {folder}")
    try:
        structure = read_structure_file(path)
        return raw_from_structure(name, structure, targets)
    except (ValueError, InvalidRecordError) as exc:
        return Rejection(name, str(exc))


def _iter_id_prop(folder: Path, names: Sequence[str] | None) -> Iterator[RawRecord | Rejection]:
    csv_path = folder / ID_PROP_FILE
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = [row for row in csv.reader(fh) if row and any(cell.strip() for cell in row)]
    if not rows:
        return
    n_targets = len(rows[0]) - 1
    tnames = list(names) if names is not None else target_names(max(n_targets, 1))
    for line_no, row in enumerate(rows, start=1):
        name = row[0].strip()
        values = [cell.strip() for cell in row[1:]]
        if len(values) != len(tnames):
            yield Rejection(
                name or f"line {line_no}",
                f"{ID_PROP_FILE} line {line_no}: expected {len(tnames)} target(s), "
                f"got {len(values)}",
            )
            continue
        yield _raw_from_file(folder, name, dict(zip(tnames, values, strict=True)))


def prediction_files(folder: Path) -> list[Path]:
    """Structure files for prediction (sorted, unique)."""
    found = {p for pattern in STRUCTURE_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sorted(found)


def load_id_prop(
    folder: str | Path,
    require_targets: bool = True,
    names: Sequence[str] | None = None,
) -> LoadResult:
    """Load a folder of structure files described by ``id_prop.csv`` (or all files, if none).

    Args:
        folder: the directory.
        require_targets: when the folder has no ``id_prop.csv``, raise instead of loading
            the structure files without targets.
        names: target names for the CSV's target columns (default: see module docstring).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no ``id_prop.csv`` while targets are required, or nothing usable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such directory: {folder}")
    source = str(folder)
    if (folder / ID_PROP_FILE).is_file():
        return validate_records(_iter_id_prop(folder, names), source)
    if require_targets:
        raise ValueError(
            f"{folder}: no {ID_PROP_FILE} (rows 'filename,target'); "
            "pass require_targets=False to load the structures for prediction"
        )
    files = prediction_files(folder)
    logger.info("%s: no %s, loading %d structure files", folder, ID_PROP_FILE, len(files))
    return validate_records((_raw_from_file(folder, p.name, {}) for p in files), source)
