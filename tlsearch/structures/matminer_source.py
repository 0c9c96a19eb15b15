"""The paper's seven datasets from matminer, and the JARVIS-DFT 2D set from jarvis-tools.

Dataset and column names are checked against ``matminer/datasets/dataset_metadata.json``
(matminer 0.10). Record ids are the matminer row index, which is the paper's ``jid``.

Note on EBG: matminer's ``expt_gap_kingsbury`` has no structure column (only ``formula``,
``expt_gap`` and ``likely_mpid``); the paper attached Materials Project structures through
``likely_mpid``. :func:`load_matminer` takes them from ``structures`` (mp-id -> structure) when
given, else from the Materials Project API (optional mp-api + ``MP_API_KEY``, cached once in the
data folder, see :mod:`tlsearch.structures.mp_structures`), else refuses naming the offline
alternative: the paper's own EBG files (jarvis JSON), which already contain the structures.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsearch.structures import mp_structures
from tlsearch.structures.dataframe import records_from_dataframe
from tlsearch.structures.jarvis_json import records_from_jarvis_list
from tlsearch.structures.records import LoadResult, Rejection
from tlsearch.structures.safe_json import read_matminer_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatminerDataset:
    """Where one paper dataset lives in matminer.

    Attributes:
        name: matminer dataset name.
        structure_column: column of pymatgen structures (``None``: the dataset has none).
        target_column: column of the property.
        mpid_column: column of Materials Project ids, used to attach structures when
            ``structure_column`` is ``None``.
    """

    name: str
    structure_column: str | None
    target_column: str
    mpid_column: str | None = None


PAPER_DATASETS: dict[str, MatminerDataset] = {
    "BG": MatminerDataset("matbench_mp_gap", "structure", "gap pbe"),
    "FE": MatminerDataset("matbench_mp_e_form", "structure", "e_form"),
    "GV": MatminerDataset("matbench_log_gvrh", "structure", "log10(G_VRH)"),
    "PH": MatminerDataset("matbench_phonons", "structure", "last phdos peak"),
    # poly_total: "the average of the eigenvalues of the total (electronic and ionic)
    # contributions to the dielectric tensor" (matminer metadata).
    "DC": MatminerDataset("dielectric_constant", "structure", "poly_total"),
    "PZ": MatminerDataset("piezoelectric_tensor", "structure", "eij_max"),
    "EBG": MatminerDataset("expt_gap_kingsbury", None, "expt_gap", mpid_column="likely_mpid"),
}
"""The paper's dataset codes -> matminer dataset, structure column and target column."""

JARVIS_2D_TARGET = "optb88vdw_bandgap"


def matminer_metadata() -> dict[str, Any]:
    """matminer's dataset metadata (``dataset_metadata.json`` shipped in the package)."""
    from matminer.datasets.utils import _load_dataset_dict

    return _load_dataset_dict()


def resolve_dataset(name_or_code: str, target: str | None = None) -> MatminerDataset:
    """Find the dataset spec for a paper code (case-insensitive) or a matminer dataset name.

    For a non-paper dataset ``target`` names the target column; the structure column must be
    ``"structure"``. Columns are checked against matminer's metadata before anything is read.

    Raises:
        ValueError: unknown name (lists the paper codes), or a column not in the dataset.
    """
    metadata = matminer_metadata()
    code = name_or_code.upper()
    by_name = {spec.name: spec for spec in PAPER_DATASETS.values()}
    if code in PAPER_DATASETS:
        spec = PAPER_DATASETS[code]
    elif name_or_code in by_name:
        spec = by_name[name_or_code]
    elif name_or_code in metadata:
        if target is None:
            raise ValueError(
                f"matminer dataset {name_or_code!r} is not one of the paper's; pass target= "
                f"(columns: {sorted(metadata[name_or_code]['columns'])})"
            )
        spec = MatminerDataset(name_or_code, "structure", target)
    else:
        raise ValueError(
            f"unknown matminer dataset {name_or_code!r}: use a paper code "
            f"({', '.join(PAPER_DATASETS)}) or a matminer dataset name "
            "(matminer.datasets.get_available_datasets())"
        )
    if target is not None:
        spec = MatminerDataset(spec.name, spec.structure_column, target, spec.mpid_column)
    _check_columns(spec, metadata[spec.name]["columns"])
    return spec


def _check_columns(spec: MatminerDataset, columns: Mapping[str, str]) -> None:
    for column in (spec.structure_column, spec.target_column, spec.mpid_column):
        if column is not None and column not in columns:
            raise ValueError(
                f"matminer dataset {spec.name!r} has no column {column!r}; "
                f"columns: {sorted(columns)}"
            )


def _mpid(value: object) -> str | None:
    """An mp-id cell as text, or None when empty (None, NaN, blank)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _check_structures_reachable(spec: MatminerDataset, home: str) -> None:
    """Refuse before any download when EBG-like structures can come from nowhere."""
    if mp_structures.cache_path(home).is_file():
        return
    if not mp_structures.mp_api_available():
        raise mp_structures.refusal(spec.name, "mp-api is not installed", home)
    if not os.environ.get("MP_API_KEY"):
        raise mp_structures.refusal(spec.name, "MP_API_KEY is not set", home)


def _records_with_mp_structures(
    df: Any,
    spec: MatminerDataset,
    structures: Mapping[str, Any] | None,
    home: str,
    target_name: str,
) -> LoadResult:
    """Records of an EBG-like set: a structure per row from its mp-id (``structures`` or MP).

    Rows without an mp-id, or whose mp-id has no structure, are rejected saying so.
    """
    column = spec.mpid_column
    ids = [_mpid(v) for v in df[column]]
    where = "structures=" if structures is not None else "the Materials Project"
    if structures is None:
        structures, _ = mp_structures.structures_by_mpid(spec.name, filter(None, ids), home)
    source = f"matminer:{spec.name}"
    rejected, keep = [], []
    for position, (rid, mid) in enumerate(zip(df.index, ids, strict=True)):
        if mid is None:
            rejected.append(Rejection(str(rid), f"no mp-id in column {column!r}"))
        elif structures.get(mid) is None:
            rejected.append(Rejection(str(rid), f"{mid}: no structure from {where}"))
        else:
            keep.append(position)
    if rejected:
        logger.warning("%s: %d rows without a structure by mp-id", source, len(rejected))
    if not keep:
        shown = "; ".join(f"{r.id}: {r.reason}" for r in rejected[:5])
        raise ValueError(f"{source}: no row has a structure ({shown})")
    df = df.iloc[keep].copy()
    df["structure"] = [structures[ids[p]] for p in keep]
    result = records_from_dataframe(
        df, structure_col="structure", targets={spec.target_column: target_name}, source=source
    )
    result.rejected = rejected + result.rejected
    return result


def _read_dataset_file(name: str, home: str, download_if_missing: bool) -> Any:
    """matminer's file of dataset ``name`` in ``home`` (downloaded and hash-checked by matminer
    when missing), decoded with the structure-class allow-list instead of matminer's own
    loader, whose monty decoder imports any class a record names."""
    from matminer.datasets.utils import _validate_dataset

    meta = matminer_metadata()[name]
    path = os.path.join(home, f"{name}.{meta['file_type']}")
    _validate_dataset(path, meta["url"], meta["hash"], download_if_missing)
    return read_matminer_json(path)


def load_matminer(
    name_or_code: str,
    target: str | None = None,
    data_home: str | Path | None = None,
    download_if_missing: bool = True,
    structures: Mapping[str, Any] | None = None,
    target_name: str = "target",
) -> LoadResult:
    """Load a matminer dataset (via ``matminer.datasets.load_dataset``) as records.

    Args:
        name_or_code: paper code (BG, FE, GV, PH, DC, PZ, EBG) or matminer dataset name.
        target: target column (default: the paper's column; required for other datasets).
        data_home: matminer's data folder (default: ``$MATMINER_DATA`` or the package folder);
            also holds the cache of Materials Project structures for EBG.
        download_if_missing: let matminer download the file when it is not in ``data_home``.
        structures: mp-id -> structure, only for datasets without structures (EBG); default:
            fetched from the Materials Project (needs mp-api and ``MP_API_KEY``) and cached.
        target_name: name of the target in the records.

    Raises:
        ValueError: unknown dataset/column, no usable structure, or EBG structures that can
            neither be read from the cache nor fetched (says how, and the offline files).
    """
    from matminer.datasets.utils import _get_data_home

    spec = resolve_dataset(name_or_code, target)
    home = _get_data_home(None if data_home is None else str(data_home))
    if spec.structure_column is None and structures is None:
        _check_structures_reachable(spec, home)
    df = _read_dataset_file(spec.name, home, download_if_missing)
    logger.info("matminer %s: %d rows, target column %r", spec.name, len(df), spec.target_column)
    if spec.structure_column is None:
        return _records_with_mp_structures(df, spec, structures, home, target_name)
    return records_from_dataframe(
        df,
        structure_col=spec.structure_column,
        targets={spec.target_column: target_name},
        source=f"matminer:{spec.name}",
    )


def load_jarvis_dft_2d(
    target: str = JARVIS_2D_TARGET,
    data_home: str | Path | None = None,
    target_name: str = "target",
    download_if_missing: bool = True,
) -> LoadResult:
    """Load JARVIS-DFT 2D; ids are the JARVIS ids.

    ``data_home``: a folder with jarvis-tools' file (``d2-12-12-2022.json.zip``, as
    ``jarvis.db.figshare.data("dft_2d", store_dir=...)`` caches it) or the file itself; read
    without network when present, else downloaded (see :mod:`tlsearch.structures.jarvis_2d`).
    Entries whose target is ``"na"`` (not computed) are rejected with that reason.

    Raises:
        ValueError: no local copy and no download (says what to fetch and where to put it).
    """
    from tlsearch.structures.jarvis_2d import dft_2d_entries

    entries, path = dft_2d_entries(data_home, download_if_missing)
    return records_from_jarvis_list(
        entries, f"jarvis:dft_2d ({path})", target_keys={target: target_name}, id_key="jid"
    )
