"""Graph construction: tlsearch vs alignn's k-nearest builder on the same structures."""

from __future__ import annotations

import logging
import time

import numpy as np

from tlsearch.graphs.build import build_one
from tlsearch.graphs.settings import GraphSettings
from tlsearch.structures.records import StructureRecord

logger = logging.getLogger(__name__)


def _sorted_edges(src, dst, vectors) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    order = np.lexsort((lengths, np.asarray(dst), np.asarray(src)))
    pairs = np.stack([np.asarray(src)[order], np.asarray(dst)[order]])
    return pairs, lengths[order]


def same_edges(a: tuple, b: tuple) -> bool:
    """Equal (src, dst) multisets with equal bond lengths (to 1e-4 A) per pair."""
    (pa, la), (pb, lb) = _sorted_edges(*a), _sorted_edges(*b)
    return pa.shape == pb.shape and bool((pa == pb).all()) and np.allclose(la, lb, atol=1e-4)


def _timed(build, indices: range, out: list) -> float:
    """Seconds to run ``out[i] = build(i)`` for every ``i`` in ``indices``."""
    t0 = time.perf_counter()
    for i in indices:
        out[i] = build(i)
    return time.perf_counter() - t0


def bench_graphs(records: list[StructureRecord], chunk: int = 20) -> dict[str, float]:
    """Structures/s of both builders and how many structures' edges differ.

    The structures are timed in chunks of ``chunk``, ours and alignn's alternately (which one
    goes first alternates too), after one untimed warm-up structure each: a burst of load on a
    shared machine then slows both sides, not just the one that happened to be running.
    """
    from alignn.graphs import build_undirected_edgedata, nearest_neighbor_edges
    from jarvis.core.atoms import Atoms

    settings = GraphSettings()
    atoms = [
        Atoms(
            lattice_mat=r.lattice, coords=r.frac_coords, elements=list(r.species), cartesian=False
        )
        for r in records
    ]

    def build_ours(i: int):
        r = records[i]
        return build_one(r.lattice, r.frac_coords, r.species, settings)

    def build_peer(i: int):
        edges, _ = nearest_neighbor_edges(
            atoms=atoms[i],
            cutoff=settings.cutoff,
            max_neighbors=settings.max_neighbors,
            use_canonize=True,
        )
        return build_undirected_edgedata(atoms[i], edges)

    build_ours(0)  # warm-up (lazy tables, first calls)
    build_peer(0)
    ours: list = [None] * len(records)
    peer: list = [None] * len(records)
    t_ours = t_peer = 0.0
    ratios = []
    for k, start in enumerate(range(0, len(records), chunk)):
        part = range(start, min(start + chunk, len(records)))
        if k % 2 == 0:
            dt_ours, dt_peer = _timed(build_ours, part, ours), _timed(build_peer, part, peer)
        else:
            dt_peer, dt_ours = _timed(build_peer, part, peer), _timed(build_ours, part, ours)
        t_ours, t_peer = t_ours + dt_ours, t_peer + dt_peer
        ratios.append(dt_peer / dt_ours)

    differ = 0
    for mine, (u, v, r, _) in zip(ours, peer, strict=True):
        _, pairs, vectors = mine
        differ += not same_edges((pairs[:, 0], pairs[:, 1], vectors), (u, v, r))
    result = {
        "structures": len(records),
        "mean_atoms": float(np.mean([r.num_atoms for r in records])),
        "tlsearch_structures_per_s": len(records) / t_ours,
        "alignn_structures_per_s": len(records) / t_peer,
        "speedup": t_peer / t_ours,
        "speedup_median_per_chunk": float(np.median(ratios)),
        "structures_with_different_edges": differ,
    }
    logger.info(
        "graphs: %d structures (mean %.1f atoms): tlsearch %.0f/s, alignn %.1f/s, ratio %.1fx, "
        "edge sets differing: %d",
        len(records),
        result["mean_atoms"],
        result["tlsearch_structures_per_s"],
        result["alignn_structures_per_s"],
        result["speedup"],
        differ,
    )
    return result
