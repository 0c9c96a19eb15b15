"""``--offline``: a spec's ``matminer:CODE`` / ``jarvis:dft_2d`` datasets read from local files.

The paper's experiments read BG/FE/... through matminer (a download). On a machine without
internet, :func:`offline_spec` rewrites each such dataset to the paper's public files (the
spec's ``vars.paper``, default ``../shared/data/paper``), by the role the dataset plays:

- **FT target** (a name in ``targets``): the paper's own FT trial files
  ``{paper}/ft/<code>/<code>_trial{trial}_{size}.json.gz`` and, for DC/EBG/GV/PH/PZ, the paper's
  test set. BG and FE have no public test set: a **stand-in** test set is written from the
  ``pt/<code>_1000`` structures that are in none of their trial files (915 for BG, 929 for FE),
  and every row of such a run says so (``data_note``).
- **PT pool** (a PT source's dataset or an MPT mix member): DC/EBG/GV/PH/PZ use the union (by
  ``jid``) of all their trial files and their test file, which for DC, PH and PZ is the whole
  dataset (DC 1,056, PH 1,265, PZ 941); BG and FE use ``pt/<code>_1000.json.gz``. Pools hold
  out no test set (the paper pre-trained on whole datasets); a PT size larger than a pool
  trains on the whole pool (BG/FE: 1,000 structures of 106K/133K), as PT jobs always do.
- ``jarvis:dft_2d``: the local copy named by ``vars.dft_2d``; without one, a rehearsal uses
  the generated layered stand-in (:data:`DFT_2D_STAND_IN`), anything else is an error that says
  what to fetch and where to put it.

The paper's files are already normalised (paper Sec. 2.3), so rewritten datasets set
``normalise: none``. A dataset used both as a target and as a PT pool is split in two (the
pool becomes ``<name>_pool``). No network is touched. Pools and stand-ins are written once to
``<folder>/`` (content-addressed file names) and reused.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from tlsearch.search.plan.spec import SearchSpec
from tlsearch.search.plan.spec_parts import PAPER_CODES

logger = logging.getLogger(__name__)

DEFAULT_PAPER_DIR = "../shared/data/paper"
#: Codes with a public test set in the paper's files.
PUBLIC_TEST = ("DC", "EBG", "GV", "PH", "PZ")
#: Codes pre-trained from ``pt/<code>_1000.json.gz`` (their full datasets are not shared).
PT_1000 = ("BG", "FE")
#: The generated stand-in for JARVIS dft_2d (layered structures), used by rehearsals only.
DFT_2D_STAND_IN = "generated2d:1100:0"


def offline_spec(
    spec: SearchSpec, base_dir: str, folder: str | Path, rehearsal: bool = False
) -> SearchSpec:
    """``spec`` with every matminer/JARVIS dataset replaced by local files (see module doc).

    Raises:
        FileNotFoundError: the paper's files are not at ``vars.paper``.
        ValueError: ``jarvis:dft_2d`` without a local copy outside a rehearsal, or a matminer
            dataset that has no offline equivalent.
    """
    data = spec.model_dump()
    paper = _paper_dir(spec, base_dir)
    folder = Path(folder)
    targets = set(spec.targets)
    pools = _pool_names(spec)
    datasets: dict[str, Any] = {}
    for name, ds in spec.datasets.items():
        code = _matminer_code(ds.data)
        prop = spec.property_of(name)
        if ds.data.strip().lower() == "jarvis:dft_2d":
            datasets[name] = _dft_2d(ds.model_dump(), spec, base_dir, rehearsal)
            continue
        if code is None:
            datasets[name] = ds.model_dump()
            continue
        if name in targets:
            datasets[name] = _target(ds.model_dump(), code, paper, folder, prop)
        if name in pools:
            pool_name = f"{name}_pool" if name in targets else name
            datasets[pool_name] = _pool(ds.model_dump(), code, paper, folder, prop)
            if pool_name != name:
                _rename_pool(data, name, pool_name)
        if name not in targets and name not in pools:  # declared, unused: keep it loadable
            datasets[name] = _pool(ds.model_dump(), code, paper, folder, prop)
    data["datasets"] = datasets
    data["offline"] = True
    return SearchSpec.model_validate(data)


def offline_folder(spec: SearchSpec) -> Path:
    """Where pools and stand-ins are written: ``<storage>/offline_data`` for local storage."""
    from tlsearch.graphs.settings import default_cache_dir
    from tlsearch.storage.uri import is_remote

    if is_remote(spec.storage):
        return Path(default_cache_dir()).parent / "offline_data"
    return Path(spec.storage) / "offline_data"


# --- roles ------------------------------------------------------------------------------------


def _pool_names(spec: SearchSpec) -> set[str]:
    names: set[str] = set()
    for source in spec.pt_sources:
        if source.dataset:
            names.add(source.dataset)
        names.update(source.mpt or [])
    return names


def _rename_pool(data: dict[str, Any], old: str, new: str) -> None:
    for source in data["pt_sources"]:
        if source.get("dataset") == old:
            source["dataset"] = new
        if source.get("mpt"):
            source["mpt"] = [new if d == old else d for d in source["mpt"]]


def _target(ds: dict[str, Any], code: str, paper: Path, folder: Path, prop: str) -> dict:
    low = code.lower()
    trials = f"{paper}/ft/{low}/{low}_trial{{trial}}_{{size}}.json.gz"
    if code in PUBLIC_TEST:
        test, note = f"{paper}/test/{low}_test.json.gz", "offline: the paper's FT and test files"
    elif code in PT_1000:
        test, n = _stand_in_test(code, paper, folder)
        note = (
            f"offline: test set is a STAND-IN ({n} structures of pt/{low}_1000 in no {code} "
            f"trial file; the paper's {code} test set is not public)"
        )
    else:
        raise ValueError(f"--offline: no local files for matminer:{code}")
    return {
        **ds,
        "data": trials,
        "test": test,
        "normalise": "none",
        "property": prop,
        "note": note,
    }


def _pool(ds: dict[str, Any], code: str, paper: Path, folder: Path, prop: str) -> dict:
    low = code.lower()
    if code in PT_1000:
        path, n = paper / "pt" / f"{low}_1000.json.gz", None
        note = f"offline: PT pool = pt/{low}_1000.json.gz (larger PT sizes use all 1,000)"
    elif code in PUBLIC_TEST:
        files = sorted((paper / "ft" / low).glob(f"{low}_trial*_*.json.gz"))
        files.append(paper / "test" / f"{low}_test.json.gz")
        path, n = _union(files, folder / f"{low}_pool", paper)
        note = f"offline: PT pool = union of the paper's {code} FT and test files ({n})"
    else:
        raise ValueError(f"--offline: no local files for matminer:{code}")
    return {
        **ds,
        "data": str(path),
        "test": None,
        "test_fraction": 0.0,
        "normalise": "none",
        "property": prop,
        "note": note,
    }


def _dft_2d(ds: dict[str, Any], spec: SearchSpec, base_dir: str, rehearsal: bool) -> dict:
    local = spec.vars.get("dft_2d")
    if local:
        path = Path(local) if Path(local).is_absolute() else Path(base_dir) / local
        if not path.exists():
            raise FileNotFoundError(f"--offline: vars.dft_2d = {local!r} does not exist")
        return {
            **ds,
            "data": "jarvis:dft_2d",
            "data_home": str(path),  # a folder holding d2-12-12-2022.json[.zip], or that file
            "note": "offline: local copy of JARVIS dft_2d",
        }
    if rehearsal:
        return {
            **ds,
            "data": DFT_2D_STAND_IN,
            "note": "STAND-IN: generated layered structures, not JARVIS dft_2d",
        }
    raise ValueError(
        "--offline: jarvis:dft_2d needs a local copy: download JARVIS dft_2d (jarvis-tools: "
        "jarvis.db.figshare.data('dft_2d'), the file d2-12-12-2022.json.zip) on a machine with "
        "internet, copy it here and set vars: {dft_2d: /path/to/that file or its folder}"
    )


# --- files ------------------------------------------------------------------------------------


def _paper_dir(spec: SearchSpec, base_dir: str) -> Path:
    raw = spec.vars.get("paper", DEFAULT_PAPER_DIR)
    path = Path(raw) if Path(raw).is_absolute() else (Path(base_dir) / raw)
    path = path.resolve()
    if not (path / "ft").is_dir():
        raise FileNotFoundError(
            f"--offline reads the paper's files from vars.paper = {raw!r} ({path}), which has "
            "no ft/ folder; set vars.paper to the folder of ../shared/data/paper"
        )
    return path


def _matminer_code(data: str) -> str | None:
    text = data.strip()
    if not text.lower().startswith("matminer:"):
        return None
    code = text.split(":", 1)[1].upper()
    if code not in PAPER_CODES:
        raise ValueError(
            f"--offline: matminer:{code} is not one of the paper's datasets "
            f"({', '.join(PAPER_CODES)}): give a local file for it"
        )
    return code


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise FileNotFoundError(f"--offline: {path} is missing from the paper's files")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _write_once(entries: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump(entries, fh)
    os.replace(tmp, path)


def _identity(files: list[Path]) -> str:
    stat = [(f.name, f.stat().st_size) for f in files]
    return hashlib.sha256(json.dumps(stat).encode()).hexdigest()[:12]


def _union(files: list[Path], stem: Path, paper: Path) -> tuple[Path, int]:
    """The records of ``files`` merged by ``jid`` (first occurrence kept, sorted by jid)."""
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"--offline: {f} is missing from the paper's files")
    path = stem.with_name(f"{stem.name}-{_identity(files)}.json.gz")
    if path.exists():
        return path, _count(path)
    merged: dict[Any, dict[str, Any]] = {}
    for f in files:
        for entry in _read(f):
            merged.setdefault(entry["jid"], entry)
    entries = [merged[k] for k in sorted(merged)]
    _write_once(entries, path)
    logger.info("offline pool %s: %d structures from %d files", path.name, len(entries), len(files))
    return path, len(entries)


def _stand_in_test(code: str, paper: Path, folder: Path) -> tuple[str, int]:
    """``pt/<code>_1000`` minus every structure of the code's trial files."""
    low = code.lower()
    trials = sorted((paper / "ft" / low).glob(f"{low}_trial*_*.json.gz"))
    source = paper / "pt" / f"{low}_1000.json.gz"
    path = folder / f"{low}_test_stand_in-{_identity([*trials, source])}.json.gz"
    if path.exists():
        return str(path), _count(path)
    used = {entry["jid"] for f in trials for entry in _read(f)}
    entries = [e for e in _read(source) if e["jid"] not in used]
    _write_once(entries, path)
    logger.info("offline stand-in test set for %s: %d structures", code, len(entries))
    return str(path), len(entries)


def _count(path: Path) -> int:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return len(json.load(fh))
