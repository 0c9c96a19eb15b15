"""JARVIS-DFT 2D (``jarvis:dft_2d``): a local copy when there is one, else the figshare download.

jarvis-tools' ``jarvis.db.figshare.data("dft_2d", store_dir=D)`` downloads a zip from figshare
to ``D/<file>.zip`` (``<file>`` = ``d2-12-12-2022.json`` in jarvis-tools 2024+, from
``get_db_info()``; ``D`` defaults to ``$ATOMGPTLAB_CACHE/jarvis_data``, else
``~/.cache/atomgptlab/jarvis_data``) and reads ``<file>`` from it. :func:`dft_2d_entries` reads
that same file without any network access when it is there, given ``data_home``:

- a folder holding ``<file>.zip`` (jarvis-tools' own cache), ``<file>`` or ``<file>.gz``;
- or the file itself (``.json``, ``.json.gz`` or a zip holding the JSON).

Only when no copy exists is it downloaded (same URL, into a temporary file moved into place, so
an interrupted download leaves nothing); without network the error says what to fetch and where
to put it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from tlsearch.structures.jarvis_json import read_json

logger = logging.getLogger(__name__)

DATASET = "dft_2d"
TIMEOUT_S = (15, 120)
"""(connect, read) timeouts of the download, so a machine without network fails fast."""


def figshare_file() -> tuple[str, str]:
    """(download URL, JSON file name) of dft_2d in the installed jarvis-tools."""
    from jarvis.db.figshare import get_db_info

    url, name = get_db_info()[DATASET][:2]
    return url, name


def default_store_dir() -> Path:
    """jarvis-tools' default download folder (not created here)."""
    base = os.environ.get("ATOMGPTLAB_CACHE", str(Path.home() / ".cache" / "atomgptlab"))
    return Path(base) / "jarvis_data"


def find_local_copy(where: Path, name: str) -> Path | None:
    """The dft_2d file at ``where`` (a file, or a folder with jarvis-tools' names), if any."""
    if where.is_file():
        return where
    for candidate in (f"{name}.zip", name, f"{name}.gz"):
        if (where / candidate).is_file():
            return where / candidate
    return None


def read_json_zip(path: Path, name: str | None = None) -> Any:
    """The JSON inside a zip: member ``name``, else the zip's only ``.json`` member.

    Raises:
        ValueError: not a zip, no such member, or unreadable JSON (names the file).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.endswith(".json")]
            member = name if name in zf.namelist() else (members[0] if len(members) == 1 else None)
            if member is None:
                raise ValueError(f"{path}: no {name or '.json'} member in the zip ({members})")
            return json.loads(zf.read(member))
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"{path}: not a readable zipped JSON ({exc}); fetch it again") from exc


def read_copy(path: Path, name: str | None = None) -> Any:
    """A local copy: a zip of the JSON, or ``.json`` / ``.json.gz``."""
    if zipfile.is_zipfile(path):
        return read_json_zip(path, name)
    return read_json(path)


def missing_error(store: Path, why: str) -> ValueError:
    url, name = figshare_file()
    return ValueError(
        f"jarvis:dft_2d: no local copy of JARVIS dft_2d in {store} and {why}. Fetch the "
        f"jarvis-tools figshare dataset 'dft_2d' ({url}, a zip holding {name}), e.g. on a "
        'machine with internet: python -c "from jarvis.db.figshare import data; '
        f"data('dft_2d', store_dir='.')\" writes {name}.zip; put that file (or the unzipped "
        f"{name}) in {store} (the dataset's data_home), or give its path as data_home, or load "
        f"it as a file: data: /path/to/{name}.zip with target: optb88vdw_bandgap"
    )


def download(store: Path) -> Path:
    """Download dft_2d's zip into ``store`` (atomically) and return its path.

    Raises:
        ValueError: no network or a failed download (see :func:`missing_error`).
    """
    import requests

    url, name = figshare_file()
    store.mkdir(parents=True, exist_ok=True)
    target = store / f"{name}.zip"
    fd, tmp = tempfile.mkstemp(dir=store, prefix=f".{name}.", suffix=".part")
    try:
        logger.info("jarvis:dft_2d: downloading %s to %s", url, target)
        with os.fdopen(fd, "wb") as fh:
            response = requests.get(url, stream=True, timeout=TIMEOUT_S)
            if hasattr(response, "raise_for_status"):
                response.raise_for_status()
            for block in response.iter_content(1 << 20):
                fh.write(block)
        if not zipfile.is_zipfile(tmp):
            raise ValueError(f"the download from {url} is not a zip file")
        os.replace(tmp, target)
    except (requests.RequestException, OSError, ValueError) as exc:
        raise missing_error(store, f"the download failed ({type(exc).__name__}: {exc})") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def dft_2d_entries(
    data_home: str | Path | None = None, download_if_missing: bool = True
) -> tuple[Any, Path]:
    """dft_2d's entries (jarvis dataset array) and the file they came from; see module doc.

    Raises:
        ValueError: no local copy and no download (not allowed, or no network).
    """
    _, name = figshare_file()
    where = default_store_dir() if data_home is None else Path(data_home).expanduser()
    path = find_local_copy(where, name)
    if path is None:
        if where.suffix in (".zip", ".json", ".gz"):
            raise missing_error(where, "that file does not exist")
        if not download_if_missing:
            raise missing_error(where, "downloading is off")
        path = download(where)
    else:
        logger.info("jarvis:dft_2d: local copy %s", path)
    return read_copy(path, name), path
