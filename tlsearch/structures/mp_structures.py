"""Materials Project structures by mp-id, for matminer datasets without structures (EBG).

matminer's ``expt_gap_kingsbury`` (the paper's EBG) holds ``formula``, ``expt_gap`` and
``likely_mpid`` only; the paper attached Materials Project structures through the mp-ids. The
documented route is the Materials Project API client, ``mp_api.client.MPRester`` (``pip
install mp-api``, a free API key in ``MP_API_KEY``): :func:`structures_by_mpid` asks it for
``material_id`` + ``structure`` in batches and caches the answer in one file
(:data:`CACHE_NAME`, in matminer's data folder), so each id is fetched once; ids MP does not
return are remembered too (delete the file to ask again). mp-api is an optional dependency.

Without mp-api (or a key) and without a complete cache, :func:`refusal` is the error: it
names the route above and the offline alternative, the paper's own EBG files.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CACHE_NAME = "expt_gap_kingsbury_mp_structures.json.gz"
"""The cache file, in matminer's data folder: ``{"structures": {mp-id: Structure.as_dict()},
"not_found": [mp-ids MP did not return]}``."""

BATCH_SIZE = 1000
MP_FIELDS = ["material_id", "structure"]
API_KEY_URL = "https://next-gen.materialsproject.org/api"
OFFLINE_EBG = (
    "{paper}/ft/ebg/ebg_trial*_*.json.gz (FT sets) and {paper}/test/ebg_test.json.gz (test set), "
    "with paper = ../shared/data/paper; `tlsearch search --offline` maps matminer:EBG to them"
)


def cache_path(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / CACHE_NAME


def mp_api_available() -> bool:
    """Whether mp-api (``mp_api.client.MPRester``) is installed (it is optional)."""
    return importlib.util.find_spec("mp_api") is not None


def refusal(dataset: str, why: str, cache_dir: str | Path) -> ValueError:
    """The error for a structure-less dataset whose structures cannot be fetched."""
    return ValueError(
        f"matminer:{dataset} (the paper's EBG): {why}. matminer holds no structures for it, "
        "only Materials Project ids; tlsearch fetches them with the Materials Project API: "
        f"`pip install mp-api` and set MP_API_KEY (a free key from {API_KEY_URL}); they are "
        f"cached once in {cache_path(cache_dir)} (or pass structures={{mp-id: structure}} to "
        f"load_matminer). Offline, use the paper's EBG files instead: {OFFLINE_EBG}"
    )


def read_cache(cache_dir: str | Path) -> tuple[dict[str, Any], set[str]]:
    """(mp-id -> structure dict, ids MP did not return) from the cache file (empty if none)."""
    path = cache_path(cache_dir)
    if not path.is_file():
        return {}, set()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        return dict(data["structures"]), set(data["not_found"])
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable mp-id structure cache ({exc}); delete it") from exc


def _write_cache(cache_dir: str | Path, structures: dict[str, Any], not_found: set[str]) -> None:
    path = cache_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = {
        "source": "Materials Project API (mp_api MPRester.materials.summary.search)",
        "structures": structures,
        "not_found": sorted(not_found),
    }
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _doc_value(doc: Any, key: str) -> Any:
    return doc.get(key) if isinstance(doc, dict) else getattr(doc, key, None)


def _as_dict(structure: Any) -> dict[str, Any]:
    return structure.as_dict() if hasattr(structure, "as_dict") else dict(structure)


def _fetch(dataset: str, ids: list[str], cache_dir: str | Path, batch_size: int) -> None:
    """Ask MP for ``ids`` in batches, adding each batch's answer to the cache file."""
    try:
        from mp_api.client import MPRester
    except ImportError:
        raise refusal(dataset, "mp-api is not installed", cache_dir) from None
    key = os.environ.get("MP_API_KEY")
    if not key:
        raise refusal(dataset, "MP_API_KEY is not set", cache_dir)
    structures, not_found = read_cache(cache_dir)
    logger.info("%s: fetching %d structures from the Materials Project", dataset, len(ids))
    with MPRester(api_key=key) as mpr:
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            try:
                docs = mpr.materials.summary.search(material_ids=batch, fields=MP_FIELDS)
            except Exception as exc:  # mp_api raises its own and requests' exception types
                raise refusal(
                    dataset, f"the Materials Project request failed ({exc})", cache_dir
                ) from exc
            got = {str(_doc_value(d, "material_id")): _doc_value(d, "structure") for d in docs}
            structures.update({m: _as_dict(s) for m, s in got.items() if s is not None})
            not_found.update(m for m in batch if m not in structures)
            _write_cache(cache_dir, structures, not_found)


def structures_by_mpid(
    dataset: str, mp_ids: Iterable[str], cache_dir: str | Path, batch_size: int | None = None
) -> tuple[dict[str, Any], set[str]]:
    """Structures of ``mp_ids`` (cached, else fetched from MP) and the ids MP did not return.

    Raises:
        ValueError: ids to fetch but no mp-api or no ``MP_API_KEY`` (see :func:`refusal`), or
            the request failed.
    """
    wanted = sorted(set(mp_ids))
    structures, not_found = read_cache(cache_dir)
    missing = [m for m in wanted if m not in structures and m not in not_found]
    if missing:
        _fetch(dataset, missing, cache_dir, batch_size or BATCH_SIZE)
        structures, not_found = read_cache(cache_dir)
    else:
        logger.info("%s: %d structures from %s", dataset, len(wanted), cache_path(cache_dir))
    found = {m: structures[m] for m in wanted if m in structures}
    return found, {m for m in wanted if m not in structures}
