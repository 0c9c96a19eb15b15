"""Load structures from a pandas DataFrame (matminer's layout) or a file holding one.

A structure cell may be a pymatgen ``Structure``, a ``Structure.as_dict()`` dict (how matminer
stores them in JSON), a jarvis ``atoms`` dict, or a string (JSON of such a dict, CIF or POSCAR
text, e.g. from a ``.csv``). Ids come from ``id_col`` when given, else from the index.

Files: ``.json``/``.json.gz`` in matminer's format (decoded with an allow-list of structure
classes, :mod:`tlsearch.structures.safe_json`), ``.csv``, and ``.pkl``/``.pkl.gz`` (a pickled
DataFrame) only with ``allow_pickle=True``: reading a pickle runs whatever code it holds, so it
is refused unless the caller opts in (CLI ``--allow-pickle``, a search dataset's
``allow_pickle: true``) for a file they trust.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsearch.structures.jarvis_json import raw_from_atoms
from tlsearch.structures.records import LoadResult, Rejection
from tlsearch.structures.safe_json import read_matminer_json
from tlsearch.structures.validate import (
    InvalidRecordError,
    RawRecord,
    raw_from_structure,
    validate_records,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

Targets = str | Sequence[str] | Mapping[str, str] | None
"""Target columns: one column (named ``"target"``), a list (names = columns), a mapping
column -> name, or ``None`` (no targets)."""

DATAFRAME_SUFFIXES = (".pkl", ".pkl.gz", ".pickle", ".json", ".json.gz", ".csv", ".csv.gz")
PICKLE_SUFFIXES = (".pkl", ".pkl.gz", ".pickle")


class PickleRefusedError(ValueError):
    """A pickle file was given without the opt-in that says it is trusted."""


def refuse_pickle(path: str | Path) -> PickleRefusedError:
    """The error for a pickle read without opt-in: names the file and the risk."""
    return PickleRefusedError(
        f"{path}: a pickle file runs any code it contains when it is read, so tlsearch reads "
        "pickles only when you say the file is trusted: --allow-pickle on the command line, "
        "allow_pickle: true on the dataset in a search spec, allow_pickle=True from Python. "
        "Safer: save the table as matminer JSON (matminer.utils.io.store_dataframe_as_json) "
        "or CSV and pass that file instead"
    )


def target_columns(targets: Targets) -> dict[str, str]:
    """Normalise ``targets`` into a mapping column -> target name."""
    if targets is None:
        return {}
    if isinstance(targets, str):
        return {targets: "target"}
    if isinstance(targets, Mapping):
        return {str(k): str(v) for k, v in targets.items()}
    return {str(c): str(c) for c in targets}


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _structure_from_string(text: str) -> Any:
    from pymatgen.core import Structure

    stripped = text.lstrip()
    if stripped.startswith("{"):
        return json.loads(stripped)
    fmt = "cif" if "data_" in stripped[:2000] else "poscar"
    return Structure.from_str(text, fmt=fmt)


def raw_from_cell(rid: str, cell: object, targets: dict[str, Any]) -> RawRecord | Rejection:
    """Convert one structure cell into a raw record (or a rejection saying why not)."""
    try:
        if isinstance(cell, str):
            cell = _structure_from_string(cell)
        if isinstance(cell, Mapping):
            if "lattice_mat" in cell:
                return raw_from_atoms(rid, cell, targets)
            from pymatgen.core import Structure

            cell = Structure.from_dict(dict(cell))
        if hasattr(cell, "lattice") and hasattr(cell, "frac_coords"):
            return raw_from_structure(rid, cell, targets)
    except InvalidRecordError as exc:
        return Rejection(rid, str(exc))
    except Exception as exc:  # pymatgen/json raise many exception types for bad input
        return Rejection(rid, f"unparseable structure ({type(exc).__name__}: {exc})")
    return Rejection(rid, f"structure cell is a {type(cell).__name__}, not a structure")


def _iter_rows(
    df: pd.DataFrame,
    structure_col: str,
    tcols: dict[str, str],
    id_col: str | None,
    require_targets: bool,
) -> Iterator[RawRecord | Rejection]:
    ids = df[id_col] if id_col is not None else df.index
    columns = [df[structure_col], *(df[c] for c in tcols)]
    # several required targets: missing cells go to validation, which masks them (NaN = unknown)
    keep_missing = require_targets and len(tcols) > 1
    for rid_value, cell, *values in zip(ids, *columns, strict=True):
        rid = str(rid_value)
        targets = {
            name: v
            for name, v in zip(tcols.values(), values, strict=True)
            if keep_missing or not _is_missing(v)
        }
        missing = [name for name in tcols.values() if name not in targets]
        if missing and require_targets:
            yield Rejection(rid, f"missing target {missing[0]!r}")
        elif _is_missing(cell):
            yield Rejection(rid, f"missing structure in column {structure_col!r}")
        else:
            yield raw_from_cell(rid, cell, targets)


def records_from_dataframe(
    df: pd.DataFrame,
    structure_col: str = "structure",
    targets: Targets = None,
    id_col: str | None = None,
    source: str = "dataframe",
    require_targets: bool = True,
) -> LoadResult:
    """Validate the structures (and targets) of a DataFrame.

    Args:
        df: the table.
        structure_col: the column holding structures.
        targets: target column(s), see :data:`Targets`.
        id_col: column with ids (default: the index).
        source: label used in logs and errors.
        require_targets: reject rows with a missing (None/NaN) target; else keep them without.
            With several target columns a missing value masks that target only (the row is
            rejected when none is known).

    Raises:
        ValueError: a named column is absent (lists the columns), or no usable row.
    """
    tcols = target_columns(targets)
    needed = [structure_col, *tcols] + ([id_col] if id_col is not None else [])
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise ValueError(
            f"{source}: no column {absent[0]!r}; columns are {[str(c) for c in df.columns]}"
        )
    required = list(tcols.values()) if require_targets else []
    raw = _iter_rows(df, structure_col, tcols, id_col, require_targets)
    return validate_records(raw, source, required_targets=required)


def read_dataframe(path: str | Path, allow_pickle: bool = False) -> pd.DataFrame:
    """Read a DataFrame from matminer ``.json[.gz]``, ``.csv[.gz]`` or, with
    ``allow_pickle=True`` only, ``.pkl[.gz]``.

    Raises:
        FileNotFoundError: missing file.
        PickleRefusedError: a pickle without ``allow_pickle`` (nothing was read).
        ValueError: unsupported suffix or unreadable content (names the file).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = path.name.lower()
    if name.endswith(PICKLE_SUFFIXES) and not allow_pickle:
        raise refuse_pickle(path)
    try:
        if name.endswith(PICKLE_SUFFIXES):
            df = pd.read_pickle(path)
        elif name.endswith((".json", ".json.gz")):
            df = read_matminer_json(path)
        elif name.endswith((".csv", ".csv.gz")):
            df = pd.read_csv(path)
        else:
            raise ValueError(f"{path}: unsupported table format (use one of {DATAFRAME_SUFFIXES})")
    except ValueError:
        raise
    except Exception as exc:  # pickle/json/pandas raise many exception types
        raise ValueError(f"{path}: cannot read a DataFrame ({type(exc).__name__}: {exc})") from exc
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{path}: expected a pandas DataFrame, got {type(df).__name__}")
    return df


def load_dataframe_file(
    path: str | Path,
    structure_col: str = "structure",
    targets: Targets = None,
    id_col: str | None = None,
    require_targets: bool = True,
    allow_pickle: bool = False,
) -> LoadResult:
    """Read a table file (see :func:`read_dataframe`) and validate it like a DataFrame."""
    df = read_dataframe(path, allow_pickle=allow_pickle)
    return records_from_dataframe(df, structure_col, targets, id_col, str(path), require_targets)
