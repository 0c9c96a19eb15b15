"""A run's data: records -> graph store (cached) -> a target matrix aligned with the store."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlsearch.graphs.settings import GraphSettings
from tlsearch.graphs.store import GraphStore, build_graph_store
from tlsearch.structures.load import load_data
from tlsearch.structures.records import LoadResult, StructureRecord
from tlsearch.training.config import RunConfig

logger = logging.getLogger(__name__)

#: ``(records, graph settings, cache dir, progress) -> store``: a backbone family's
#: :meth:`~tlsearch.model.backbone.Backbone.input_store` (ALIGNN: the graph store).
InputStoreFactory = Callable[[Sequence[StructureRecord], GraphSettings, Path | None, bool], Any]


@dataclass
class PreparedData:
    """A loaded dataset with its graphs and targets aligned to the graph store.

    Attributes:
        spec: the data spec it came from.
        loaded: the loader's result (records and rejections).
        store: graphs of the accepted records (``store.ids`` in input order); for another
            backbone family, its input store (the same interface).
        target_names: the target columns.
        targets: (len(store), P) float64, NaN where unknown; None when the data has none of the
            targets (prediction only).
    """

    spec: str
    loaded: LoadResult
    store: GraphStore
    target_names: list[str]
    targets: np.ndarray | None


def resolve_target_names(
    records: Sequence[StructureRecord], requested: str | None, order: Sequence[str] = ()
) -> list[str]:
    """The target columns of a training set.

    Without ``requested``: every target name the records carry, in the source's ``order``
    (``LoadResult.target_order``: a NaN-masked first value does not move a column), then
    first-seen. With it: ``[requested]``, or the single name the loader stored it under.

    Raises:
        ValueError: when the records carry no target, or not the requested one.
    """
    found: dict[str, None] = {}
    for record in records:
        found.update(dict.fromkeys(record.targets))
    rank = {name: i for i, name in enumerate(order)}
    names = sorted(found, key=lambda name: rank.get(name, len(rank)))  # stable: first-seen
    if not names:
        raise ValueError("the training data has no target values")
    if requested is None:
        return names
    if requested in found:
        return [requested]
    if len(names) == 1:
        return names
    raise ValueError(f"target {requested!r} not in the data (it has {', '.join(names)})")


def target_matrix(
    ids: Sequence[str], records: Sequence[StructureRecord], names: Sequence[str]
) -> np.ndarray:
    """(len(ids), P) float64 of the records' targets in ``ids`` order, NaN where missing."""
    by_id = {r.id: r for r in records}
    out = np.full((len(ids), len(names)), np.nan)
    for i, rid in enumerate(ids):
        record = by_id.get(rid)
        if record is None:
            raise ValueError(f"graph store id {rid!r} matches no loaded record")
        for j, name in enumerate(names):
            value = record.targets.get(name)
            if value is not None:
                out[i, j] = value
    return out


def prepare_data(
    spec: str,
    *,
    names: Sequence[str] | None,
    graph_settings: GraphSettings,
    cache_dir: Path | None,
    target: str | None = None,
    data_home: Path | None = None,
    require_targets: bool = True,
    role: str = "data",
    progress: bool = True,
    loaded: LoadResult | None = None,
    allow_pickle: bool = False,
    input_store: InputStoreFactory | None = None,
) -> PreparedData:
    """Load ``spec``, build (or read cached) graphs, and align the targets with the store.

    Args:
        names: target columns to read (``None``: resolve them from the records, see
            :func:`resolve_target_names`).
        require_targets: every name must be present in the data (else ``targets`` may be None).
        role: "training", "test"... used in messages.
        loaded: records already in memory (e.g. a multi-property corpus); ``spec`` then only
            names them.
        allow_pickle: read a pickled table (runs the code it holds: trusted files only).
        input_store: builds the model family's inputs
            (:meth:`~tlsearch.model.backbone.Backbone.input_store`; default: ALIGNN's graph
            store, :func:`~tlsearch.graphs.store.build_graph_store`).

    Raises:
        ValueError / FileNotFoundError: bad spec, no usable structure, missing targets.
    """
    try:
        if loaded is None:
            loaded = load_data(
                spec,
                target=target,
                data_home=data_home,
                require_targets=require_targets,
                allow_pickle=allow_pickle,
            )
    except FileNotFoundError as exc:  # say which of the run's inputs it was
        raise FileNotFoundError(f"{role} data: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{role} data: {exc}") from exc
    if names is None:
        names = resolve_target_names(loaded.records, target, loaded.target_order)
    names = list(names)
    present = {name for r in loaded.records for name in r.targets}
    missing = [name for name in names if name not in present]
    if missing and require_targets:
        raise ValueError(f"{role} data {spec}: no record has target(s) {', '.join(missing)}")
    store = (input_store or build_graph_store)(loaded.records, graph_settings, cache_dir, progress)
    if len(store) == 0:
        raise ValueError(f"{role} data {spec}: no graph could be built for any structure")
    targets = (
        None if len(missing) == len(names) else target_matrix(store.ids, loaded.records, names)
    )
    logger.info(
        "%s data %s: %d structures with graphs, %d rejected (graph cache %s)",
        role, spec, len(store), len(loaded.rejected) + len(store.rejected),
        "hit" if store.cache_hit else "miss",
    )  # fmt: skip
    return PreparedData(spec, loaded, store, names, targets)


def prepare_run_data(
    cfg: RunConfig,
    spec: str,
    names: Sequence[str] | None,
    role: str,
    progress: bool,
    loaded: LoadResult | None = None,
    input_store: InputStoreFactory | None = None,
) -> PreparedData:
    """:func:`prepare_data` with the run's target, data home, graph settings and cache."""
    return prepare_data(
        spec,
        names=names,
        graph_settings=cfg.graphs,
        cache_dir=cfg.cache_dir,
        target=cfg.target,
        data_home=cfg.data_home,
        role=role,
        progress=progress,
        loaded=loaded,
        allow_pickle=cfg.allow_pickle,
        input_store=input_store,
    )


def rejection_rows(data: PreparedData) -> list[dict[str, str]]:
    """Every rejected structure of ``data``: id, stage (load or graph) and reason."""
    rows = [{"id": r.id, "stage": "load", "reason": r.reason} for r in data.loaded.rejected]
    rows += [{"id": r.id, "stage": "graph", "reason": r.reason} for r in data.store.rejected]
    return rows
