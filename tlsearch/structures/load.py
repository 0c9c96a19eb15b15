"""One entry point for every data source: :func:`load_data`.

Accepted specs (records always carry a single target named ``"target"``, except id_prop folders
with several target columns, see :mod:`tlsearch.structures.id_prop`):

- ``path/to/file.json[.gz]``: a jarvis-style dataset array (list of records with ``"atoms"``);
  any other JSON is read as a matminer-format DataFrame (structure column ``"structure"``).
- ``path/to/file.json.zip``: a zipped jarvis dataset array (how jarvis-tools downloads them,
  e.g. ``d2-12-12-2022.json.zip`` for dft_2d: pass ``target="optb88vdw_bandgap"``).
- ``path/to/folder``: ALIGNN ``id_prop.csv`` folder (or bare structure files for prediction).
- ``path/to/file.cif`` / ``POSCAR`` / ``CONTCAR`` / ``*.vasp``: one structure, no target (for
  prediction; id = the file name).
- ``path/to/data.db``: an ASE database; ``path/to/frames.extxyz`` / ``.xyz``: extended XYZ;
  ``target=<key>`` names the property (a row key / ``info`` or calculator key such as
  ``energy``), see :mod:`tlsearch.structures.ase_io`.
- ``path/to/table.csv[.gz]``: a DataFrame with a ``"structure"`` column; ``.pkl[.gz]`` too, with
  ``allow_pickle=True`` only (a pickle runs the code it holds when read).
- ``matminer:CODE`` (BG, FE, GV, PH, DC, PZ, EBG) or ``matminer:<dataset_name>``.
- ``jarvis:dft_2d``: JARVIS-DFT 2D (default target ``optb88vdw_bandgap``).
- ``generated:N[:SEED]``: the built-in prototype generator (Morse energy per atom).
- ``generated2d:N[:SEED]``: a generated STAND-IN for JARVIS dft_2d, layered structures with a
  band-gap-like target (ids ``gen2d-...``; :mod:`tlsearch.structures.layered`).

Files and ``generated:``/``generated2d:`` specs are memoised per process
(:data:`LOAD_CACHE_MAX_RECORDS` records at most, least recently used dropped; files keyed by
path, size and modification time; ``TLSEARCH_LOAD_CACHE=0`` turns it off): a search's trial
process runs many seed-runs on the same data and used to load or generate it again for every
one. Callers get their own lists.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

from tlsearch.structures.records import LoadResult

logger = logging.getLogger(__name__)

ACCEPTED_FORMS = (
    "a .json/.json.gz file (jarvis dataset array or matminer DataFrame JSON)",
    "a .json.zip file (zipped jarvis dataset array, as jarvis-tools downloads it)",
    "a directory (id_prop.csv + CIF/POSCAR files, or structure files for prediction)",
    "one .cif/POSCAR/CONTCAR/.vasp file (a structure to predict)",
    "an ASE database .db or an extended XYZ .extxyz/.xyz file, with target=<property key>",
    "a .pkl/.pkl.gz/.csv/.csv.gz DataFrame with a 'structure' column",
    "matminer:CODE (BG, FE, GV, PH, DC, PZ, EBG) or matminer:<dataset_name>",
    "jarvis:dft_2d",
    "generated:N[:SEED]",
    "generated2d:N[:SEED] (layered stand-in for jarvis:dft_2d)",
)

_PEEK_BYTES = 65536

#: Records the per-process load cache may hold (all entries together).
LOAD_CACHE_MAX_RECORDS = 200_000
_LOAD_CACHE: OrderedDict[tuple, LoadResult] = OrderedDict()


def _unknown(spec: str, why: str) -> ValueError:
    forms = "\n  - ".join(ACCEPTED_FORMS)
    return ValueError(f"cannot load {spec!r}: {why}. Accepted forms:\n  - {forms}")


def is_empty_json(path: Path) -> bool:
    """Whether a JSON file holds nothing: no bytes, ``[]``, ``{}`` or a table without rows."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(_PEEK_BYTES + 1)
    if len(head) > _PEEK_BYTES:
        return False
    text = head.decode("utf-8", errors="replace").strip()
    if text in ("", "[]", "{}", "null"):
        return True
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("data") == [] and "columns" in value


def is_jarvis_array(path: Path) -> bool:
    """Whether a JSON file looks like a jarvis dataset array (peeks at the first bytes only)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(_PEEK_BYTES).decode("utf-8", errors="replace").lstrip()
    return head.startswith("[") and '"atoms"' in head


def _load_json(path: Path, target: str | None, require_targets: bool) -> LoadResult:
    from tlsearch.structures.dataframe import load_dataframe_file
    from tlsearch.structures.jarvis_json import load_jarvis_json

    if is_jarvis_array(path):
        keys = {target or "target": "target"}
        return load_jarvis_json(path, target_keys=keys, require_targets=require_targets)
    if is_empty_json(path):
        raise ValueError(f"no records in {path}: the file is empty or holds an empty list/table")
    if target is None and require_targets:
        raise ValueError(f"{path}: a matminer DataFrame JSON needs target=<column name>")
    return load_dataframe_file(path, targets=target, require_targets=require_targets)


def _load_zip(path: Path, target: str | None, require_targets: bool) -> LoadResult:
    from tlsearch.structures.jarvis_2d import read_json_zip
    from tlsearch.structures.jarvis_json import records_from_jarvis_list

    keys = {target or "target": "target"}
    entries = read_json_zip(path)
    return records_from_jarvis_list(entries, str(path), keys, require_targets=require_targets)


def _load_path(
    path: Path, target: str | None, require_targets: bool, allow_pickle: bool = False
) -> LoadResult:
    from tlsearch.structures.ase_io import (
        ASE_DB_SUFFIXES,
        EXTXYZ_SUFFIXES,
        load_ase_db,
        load_extxyz,
    )
    from tlsearch.structures.dataframe import load_dataframe_file
    from tlsearch.structures.id_prop import load_id_prop

    name = path.name.lower()
    if path.is_dir():
        if target is not None:
            logger.info("%s: id_prop folder, target=%r is not used", path, target)
        return load_id_prop(path, require_targets=require_targets)
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if name.endswith((".json", ".json.gz")):
        return _load_json(path, target, require_targets)
    if name.endswith(".zip"):
        return _load_zip(path, target, require_targets)
    if name.endswith(ASE_DB_SUFFIXES):
        return load_ase_db(path, target, require_targets=require_targets)
    if name.endswith(EXTXYZ_SUFFIXES):
        return load_extxyz(path, target, require_targets=require_targets)
    if is_structure_file(path):
        return _load_structure_file(path, require_targets)
    if name.endswith((".pkl", ".pkl.gz", ".pickle", ".csv", ".csv.gz")):
        if target is None and require_targets:
            raise ValueError(f"{path}: a DataFrame file needs target=<column name>")
        return load_dataframe_file(
            path, targets=target, require_targets=require_targets, allow_pickle=allow_pickle
        )
    raise _unknown(str(path), "unsupported file type")


def is_structure_file(path: Path) -> bool:
    """Whether ``path`` names one CIF/POSCAR structure file (by its name)."""
    name = path.name.lower()
    return name.endswith((".cif", ".vasp")) or name.startswith(("poscar", "contcar"))


def _load_structure_file(path: Path, require_targets: bool) -> LoadResult:
    from tlsearch.structures.objects import records_from_objects

    if require_targets:
        raise ValueError(
            f"{path}: one structure file has no target; to train, use a folder of such files "
            "with id_prop.csv (rows 'filename,target')"
        )
    return records_from_objects([path], errors="skip", source=str(path))


def _load_generated(spec: str, scheme: str, rest: str) -> LoadResult:
    from tlsearch.structures.generate import generate_dataset
    from tlsearch.structures.layered import generate_layered_dataset

    parts = rest.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise _unknown(spec, f"{scheme}:N[:SEED] needs integers") from None
    if not 1 <= len(numbers) <= 2 or numbers[0] < 1:
        raise _unknown(spec, f"{scheme}:N[:SEED] needs N >= 1 and at most one seed")
    generate = generate_layered_dataset if scheme == "generated2d" else generate_dataset
    return generate(numbers[0], seed=numbers[1] if len(numbers) == 2 else 0)


def _load_scheme(spec: str, target: str | None, data_home: str | Path | None) -> LoadResult:
    from tlsearch.structures import matminer_source

    scheme, _, rest = spec.partition(":")
    if scheme == "matminer":
        if not rest:
            raise _unknown(spec, "matminer: needs a paper code or a matminer dataset name")
        return matminer_source.load_matminer(rest, target=target, data_home=data_home)
    if scheme == "jarvis":
        if rest != "dft_2d":
            raise _unknown(spec, "only jarvis:dft_2d is supported")
        return matminer_source.load_jarvis_dft_2d(
            target=target or matminer_source.JARVIS_2D_TARGET, data_home=data_home
        )
    if scheme in ("generated", "generated2d"):
        return _load_generated(spec, scheme, rest)
    raise _unknown(spec, f"unknown source {scheme!r}")


def load_data(
    spec: str | Path,
    *,
    target: str | None = None,
    data_home: str | Path | None = None,
    require_targets: bool = True,
    allow_pickle: bool = False,
) -> LoadResult:
    """Load structures (and targets) from any supported source; see the module docstring.

    Args:
        spec: a path or a ``scheme:...`` string.
        target: the source's target key/column (named ``"target"`` in the records); default:
            ``"target"`` for jarvis JSON, the paper's column for matminer codes.
        data_home: download/cache folder for ``matminer:`` and ``jarvis:`` sources.
        require_targets: reject records without the target (False for prediction data).
        allow_pickle: read ``.pkl``/``.pickle`` tables (a pickle runs the code it holds: only
            for files you trust); without it such a file is refused, naming the risk.

    Raises:
        ValueError: unknown spec (lists the accepted forms) or no usable structure.
        FileNotFoundError: a path that does not exist.
    """
    key = _cache_key(spec, target, data_home, require_targets, allow_pickle)
    cached = _LOAD_CACHE.get(key) if key is not None else None
    if cached is not None:
        _LOAD_CACHE.move_to_end(key)
        logger.debug("%s: %d records from the per-process load cache", spec, len(cached.records))
        return _copy(cached)
    result = _load_uncached(spec, target, data_home, require_targets, allow_pickle)
    if key is not None:
        _remember(key, result)
        return _copy(result)
    return result


def clear_load_cache() -> None:
    """Forget every memoised load (tests; freeing memory)."""
    _LOAD_CACHE.clear()


def _cache_key(
    spec: str | Path,
    target: str | None,
    data_home: str | Path | None,
    require_targets: bool,
    allow_pickle: bool,
) -> tuple | None:
    """The memo key of a load, or None when it is not memoised (folders, downloads, off)."""
    if os.environ.get("TLSEARCH_LOAD_CACHE", "1") == "0":
        return None
    options = (target, require_targets, allow_pickle)
    if isinstance(spec, str) and spec.startswith(("generated:", "generated2d:")):
        return ("generated", spec, *options)
    if isinstance(spec, str) and spec.partition(":")[0] in ("matminer", "jarvis"):
        return None
    try:
        path = Path(spec).resolve()
        stat = path.stat()
    except (OSError, ValueError):
        return None
    if not path.is_file():
        return None
    return ("file", str(path), stat.st_size, stat.st_mtime_ns, *options)


def _remember(key: tuple, result: LoadResult) -> None:
    if len(result.records) > LOAD_CACHE_MAX_RECORDS:
        return
    _LOAD_CACHE[key] = result
    while sum(len(r.records) for r in _LOAD_CACHE.values()) > LOAD_CACHE_MAX_RECORDS:
        _LOAD_CACHE.popitem(last=False)


def _copy(result: LoadResult) -> LoadResult:
    """The result with its own lists (records are frozen and shared)."""
    return dataclasses.replace(result, records=list(result.records), rejected=list(result.rejected))


def _load_uncached(
    spec: str | Path,
    target: str | None,
    data_home: str | Path | None,
    require_targets: bool,
    allow_pickle: bool,
) -> LoadResult:
    if isinstance(spec, Path):
        return _load_path(spec, target, require_targets, allow_pickle)
    scheme = spec.partition(":")[0]
    if scheme in ("matminer", "jarvis", "generated", "generated2d"):
        return _load_scheme(spec, target, data_home)
    path = Path(spec)
    if path.exists() or path.suffix:
        return _load_path(path, target, require_targets, allow_pickle)
    raise _unknown(spec, "not an existing path nor a known scheme")
