"""Build the graphs of many structures, in order, in parallel when it pays, one chunk at a time."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from tlsearch.graphs.features import atomic_numbers
from tlsearch.graphs.neighbors import GraphBuildError, knn_edges
from tlsearch.graphs.settings import GraphSettings
from tlsearch.structures.records import StructureRecord

logger = logging.getLogger(__name__)

PARALLEL_THRESHOLD = 2000  # below this, starting worker processes costs more than it saves
CHUNK = 256

GraphArrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # numbers, (E, 2) edges, (E, 3) vectors
Result = GraphArrays | str  # arrays, or the reason no graph could be built


def build_one(
    lattice: np.ndarray, frac_coords: np.ndarray, species: Sequence[str], settings: GraphSettings
) -> Result:
    """Graph arrays of one structure, or the reason it has none (never raises for bad input)."""
    try:
        numbers = atomic_numbers(species)
        edges = knn_edges(
            lattice,
            frac_coords,
            cutoff=settings.cutoff,
            max_neighbors=settings.max_neighbors,
            use_canonize=settings.use_canonize,
        )
    except (GraphBuildError, KeyError, ValueError, np.linalg.LinAlgError) as exc:
        return str(exc).strip("'\"") or type(exc).__name__
    pairs = np.stack([edges.src, edges.dst], axis=1).astype(np.int32)
    return numbers, pairs, edges.vectors.astype(np.float32)


def _build_task(task: tuple[int, np.ndarray, np.ndarray, tuple[str, ...], GraphSettings]):
    position, lattice, frac, species, settings = task
    return position, build_one(lattice, frac, species, settings)


def _default_workers(n: int) -> int:
    if n < PARALLEL_THRESHOLD:
        return 1
    return max(1, len(os.sched_getaffinity(0)))


def build_many(
    records: Sequence[StructureRecord],
    settings: GraphSettings,
    progress: bool = True,
    workers: int | None = None,
) -> Iterator[tuple[int, Result]]:
    """Yield ``(position, result)`` for every record, in input order.

    With several workers, structures go to a process pool in chunks; results come back in order
    and are handed on one at a time, so the caller can stream them to disk.
    """
    workers = _default_workers(len(records)) if workers is None else max(1, workers)
    tasks = (
        (position, r.lattice, r.frac_coords, r.species, settings)
        for position, r in enumerate(records)
    )
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    bar = tqdm(total=len(records), desc="graphs", unit="struct", disable=None if progress else True)
    try:
        if workers == 1:
            for task in tasks:
                yield _build_task(task)
                bar.update()
            return
        logger.info("building %d graphs with %d processes", len(records), workers)
        with mp.get_context("forkserver").Pool(workers) as pool:
            for item in pool.imap(_build_task, tasks, chunksize=CHUNK):
                yield item
                bar.update()
    finally:
        bar.close()
