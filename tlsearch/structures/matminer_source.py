"""The paper's seven datasets from matminer, and the JARVIS-DFT 2D set from jarvis-tools.

Dataset and column names are checked against ``matminer/datasets/dataset_metadata.json``
(matminer 0.10). Record ids are the matminer row index, which is the paper's ``jid``.

Note on EBG: matminer's ``expt_gap_kingsbury`` has no structure column (only ``formula``,
``expt_gap`` and ``likely_mpid``); the paper attached Materials Project structures through
``likely_mpid``. :func:`load_matminer` therefore needs ``structures`` (mp-id -> structure) for
EBG; the paper's own EBG files (jarvis JSON) already contain the structures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsearch.structures.dataframe import records_from_dataframe
from tlsearch.structures.jarvis_json import records_from_jarvis_list
from tlsearch.structures.records import LoadResult

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


def _attach_structures(df: Any, spec: MatminerDataset, structures: Mapping[str, Any]) -> Any:
    """Add a ``structure`` column from ``structures`` (mp-id -> structure) for EBG-like sets."""
    df = df.copy()
    df["structure"] = [structures.get(str(m)) for m in df[spec.mpid_column]]
    return df


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
        data_home: matminer's data folder (default: ``$MATMINER_DATA`` or the package folder).
        download_if_missing: let matminer download the file when it is not in ``data_home``.
        structures: mp-id -> structure, only for datasets without structures (EBG).
        target_name: name of the target in the records.

    Raises:
        ValueError: unknown dataset/column, or no usable structure.
    """
    from matminer.datasets import load_dataset

    spec = resolve_dataset(name_or_code, target)
    if spec.structure_column is None and structures is None:
        raise ValueError(
            f"matminer dataset {spec.name!r} has no structures (only {spec.mpid_column!r}); "
            "pass structures={mp-id: Structure or dict}, or use the paper's EBG files "
            "(jarvis JSON, e.g. ../shared/data/paper/ft/ebg/*.json.gz)"
        )
    df = load_dataset(
        spec.name,
        data_home=None if data_home is None else str(data_home),
        download_if_missing=download_if_missing,
    )
    structure_column = spec.structure_column
    if structure_column is None:
        df = _attach_structures(df, spec, structures or {})
        structure_column = "structure"
    logger.info("matminer %s: %d rows, target column %r", spec.name, len(df), spec.target_column)
    return records_from_dataframe(
        df,
        structure_col=structure_column,
        targets={spec.target_column: target_name},
        source=f"matminer:{spec.name}",
    )


def load_jarvis_dft_2d(
    target: str = JARVIS_2D_TARGET,
    data_home: str | Path | None = None,
    target_name: str = "target",
) -> LoadResult:
    """Load JARVIS-DFT 2D (``jarvis.db.figshare.data("dft_2d")``); ids are the JARVIS ids.

    Entries whose target is ``"na"`` (not computed) are rejected with that reason.
    """
    from jarvis.db.figshare import data

    store_dir = None if data_home is None else str(data_home)
    if store_dir is not None:
        Path(store_dir).mkdir(parents=True, exist_ok=True)
    entries = data("dft_2d", store_dir=store_dir)
    return records_from_jarvis_list(
        entries, "jarvis:dft_2d", target_keys={target: target_name}, id_key="jid"
    )
