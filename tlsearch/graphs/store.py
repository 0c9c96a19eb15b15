"""Content-addressed, on-disk store of crystal graphs, and batching from it.

A dataset's graphs are built once, streamed to flat binary files while they are built (memory
stays bounded by one chunk, whatever the dataset size), and memory-mapped by every later run:

    <cache_dir>/<key>/meta.json        settings, counts, accepted positions, rejections
    <cache_dir>/<key>/numbers.i16      atomic number of every atom, all structures back to back
    <cache_dir>/<key>/edges.i32        (E_total, 2) local source/destination atom of every bond
    <cache_dir>/<key>/vectors.f32      (E_total, 3) bond vectors (Angstrom)
    <cache_dir>/<key>/node_ptr.i64     (n + 1) offsets into numbers
    <cache_dir>/<key>/edge_ptr.i64     (n + 1) offsets into edges/vectors

``key`` hashes the graph settings, the cache format and every structure's geometry and species
(in order), not ids or targets: the same structures under other ids or targets reuse the entry.
An entry is built in a temporary folder and renamed into place when complete, under a file lock,
so concurrent runs build it once and a killed build leaves nothing that looks complete.
``meta.json`` records a checksum of every array file; an existing entry is verified before use
(:mod:`tlsearch.graphs.verify`) and a corrupt one is rebuilt with a warning naming it.
The line graph is not stored: see :mod:`tlsearch.graphs.linegraph`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from tlsearch.graphs.batch import GraphBatch
from tlsearch.graphs.build import build_many
from tlsearch.graphs.features import cgcnn_table
from tlsearch.graphs.linegraph import bond_cosines, line_graph
from tlsearch.graphs.neighbors import MIN_ATOM_DISTANCE
from tlsearch.graphs.settings import GraphSettings
from tlsearch.graphs.verify import (
    ARRAY_FILES,
    CorruptEntryError,
    file_checksum,
    read_meta,
    verify_entry,
)
from tlsearch.storage.locks import file_lock
from tlsearch.structures.records import Rejection, StructureRecord

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
_ARRAYS = {  # name -> (dtype, columns)
    "numbers": (np.int16, 1),
    "edges": (np.int32, 2),
    "vectors": (np.float32, 3),
}


def dataset_key(records: Sequence[StructureRecord], settings: GraphSettings) -> str:
    """Cache key: graph settings + cache format + every structure's content, in order."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"format={CACHE_FORMAT};{settings.cache_token()}".encode())
    for record in records:
        h.update(record.content_hash().encode())
    return h.hexdigest()


class GraphStore:
    """The graphs of a dataset, memory-mapped from the cache or held in memory.

    Attributes:
        ids: ids of the structures that have a graph, in input order.
        positions: index in the input record list of each of those structures.
        rejected: structures no graph could be built for, with the reason.
        settings: graph settings.
        cache_hit: True when read from an existing cache entry.
        path: the cache entry, or None for an in-memory store.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        ids: list[str],
        positions: list[int],
        rejected: list[Rejection],
        settings: GraphSettings,
        cache_hit: bool = False,
        path: Path | None = None,
    ) -> None:
        self._arrays = arrays
        self.ids = ids
        self.positions = positions
        self.rejected = rejected
        self.settings = settings
        self.cache_hit = cache_hit
        self.path = path
        self._features = torch.from_numpy(cgcnn_table())

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict:
        """Pickle a cached store by path only (cheap to send to worker processes)."""
        state = self.__dict__.copy()
        state.pop("_features")
        if self.path is not None:
            state["_arrays"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._arrays is None:
            self._arrays = _open_arrays(self.path)
        self._features = torch.from_numpy(cgcnn_table())

    def num_atoms(self) -> np.ndarray:
        """Atoms per structure, (n,)."""
        return np.diff(self._arrays["node_ptr"])

    def num_edges(self) -> np.ndarray:
        """Directed bonds per structure, (n,)."""
        return np.diff(self._arrays["edge_ptr"])

    def graph(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(atomic numbers, (E, 2) local edges, (E, 3) vectors) of one structure."""
        a = self._arrays
        n0, n1 = a["node_ptr"][index], a["node_ptr"][index + 1]
        e0, e1 = a["edge_ptr"][index], a["edge_ptr"][index + 1]
        return a["numbers"][n0:n1], a["edges"][e0:e1], a["vectors"][e0:e1]

    def collate(self, indices: Sequence[int]) -> GraphBatch:
        """A batch of the graphs at positions ``indices`` (targets left None)."""
        numbers, edges, vectors, node_counts = [], [], [], []
        offset = 0
        for index in indices:
            z, e, v = self.graph(int(index))
            numbers.append(z)
            edges.append(e + offset)
            vectors.append(v)
            node_counts.append(len(z))
            offset += len(z)
        z = torch.from_numpy(np.concatenate(numbers).astype(np.int64))
        edge_index = torch.from_numpy(np.concatenate(edges).T.astype(np.int64))
        edge_vectors = torch.from_numpy(np.concatenate(vectors))
        lg_index = line_graph(edge_index, offset)
        node_graph = torch.repeat_interleave(
            torch.arange(len(node_counts)), torch.tensor(node_counts)
        )
        return GraphBatch(
            atom_features=self._features[z],
            edge_index=edge_index,
            edge_vectors=edge_vectors,
            lg_index=lg_index,
            angle_cosines=bond_cosines(edge_vectors, lg_index),
            node_graph=node_graph,
            num_graphs=len(node_counts),
            ids=[self.ids[int(i)] for i in indices],
        )


def build_graph_store(
    records: Sequence[StructureRecord],
    settings: GraphSettings | None = None,
    cache_dir: Path | str | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> GraphStore:
    """Build (or read from ``cache_dir``) the graphs of ``records``.

    Args:
        records: the structures.
        settings: graph settings (the paper's by default).
        cache_dir: cache root; None builds in memory (nothing written).
        progress: show a progress bar while building.
        workers: processes for building (default: all cores for large datasets).

    Returns:
        The store; structures no graph can be built for are in ``store.rejected``.

    Raises:
        ValueError: when no structure at all has a graph.
    """
    settings = settings or GraphSettings()
    if cache_dir is None:
        chunks = build_many(records, settings, progress=progress, workers=workers)
        arrays, accepted, rejected = _collect_in_memory(chunks)
        return _make_store(records, arrays, accepted, rejected, settings, False, None)
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    key = dataset_key(records, settings)
    final = root / key
    with file_lock(root / f"{key}.lock"):
        hit = final.exists() and _usable(final, len(records))
        if hit:
            logger.info("graph cache hit: %s (%d structures)", final, len(records))
        else:
            logger.info("graph cache miss: building %d graphs into %s", len(records), final)
            _build_entry(records, settings, final, progress, workers)
        meta = read_meta(final)
    rejected = [(int(p), reason) for p, reason in meta["rejected"]]
    return _make_store(
        records, _open_arrays(final), meta["accepted"], rejected, settings, hit, final
    )


#: Entries verified by this process: path -> (name, size, mtime) of its files when verified.
_VERIFIED: dict[str, tuple] = {}


def _fingerprint(entry: Path) -> tuple:
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(entry.iterdir()))


def _usable(entry: Path, num_structures: int) -> bool:
    """Whether the existing entry passes :func:`verify_entry`; a failing one is removed with a
    warning naming it and what is wrong (the caller then builds it again). Checked once per
    process while its files stay unchanged."""
    fingerprint = _fingerprint(entry)
    if _VERIFIED.get(str(entry)) == fingerprint:
        return True
    try:
        verify_entry(entry, num_structures, CACHE_FORMAT, len(cgcnn_table()), MIN_ATOM_DISTANCE)
    except CorruptEntryError as exc:
        aside = entry.parent / f"_bad-{entry.name}-{uuid.uuid4().hex[:8]}"
        logger.warning("graph cache entry is corrupt, rebuilding it: %s", exc)
        os.replace(entry, aside)
        shutil.rmtree(aside, ignore_errors=True)
        _VERIFIED.pop(str(entry), None)
        return False
    _VERIFIED[str(entry)] = fingerprint
    return True


def _make_store(
    records: Sequence[StructureRecord],
    arrays: dict[str, np.ndarray],
    accepted: list[int],
    rejected: list[tuple[int, str]],
    settings: GraphSettings,
    cache_hit: bool,
    path: Path | None,
) -> GraphStore:
    if not accepted:
        reasons = "; ".join(f"{records[p].id}: {r}" for p, r in rejected[:5])
        raise ValueError(f"no graph could be built for any of {len(records)} structures: {reasons}")
    return GraphStore(
        arrays,
        ids=[records[p].id for p in accepted],
        positions=list(accepted),
        rejected=[Rejection(records[p].id, f"no graph: {reason}") for p, reason in rejected],
        settings=settings,
        cache_hit=cache_hit,
        path=path,
    )


def _build_entry(
    records: Sequence[StructureRecord],
    settings: GraphSettings,
    final: Path,
    progress: bool,
    workers: int | None,
) -> None:
    """Stream graphs into a temporary folder, then rename it to ``final``."""
    tmp = final.parent / f"_tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        accepted, rejected, node_ptr, edge_ptr = [], [], [0], [0]
        with contextlib.ExitStack() as stack:
            files = {
                name: stack.enter_context(open(tmp / _file_name(name), "wb")) for name in _ARRAYS
            }
            for position, result in build_many(records, settings, progress, workers):
                if isinstance(result, str):
                    rejected.append((position, result))
                    continue
                numbers, edges, vectors = result
                files["numbers"].write(numbers.tobytes())
                files["edges"].write(edges.tobytes())
                files["vectors"].write(vectors.tobytes())
                accepted.append(position)
                node_ptr.append(node_ptr[-1] + len(numbers))
                edge_ptr.append(edge_ptr[-1] + len(edges))
        np.asarray(node_ptr, dtype=np.int64).tofile(tmp / "node_ptr.i64")
        np.asarray(edge_ptr, dtype=np.int64).tofile(tmp / "edge_ptr.i64")
        checksums = {name: file_checksum(tmp / name) for name in ARRAY_FILES}
        meta = {
            "format": CACHE_FORMAT,
            "settings": settings.model_dump(),
            "num_structures": len(records),
            "num_atoms": node_ptr[-1],
            "num_edges": edge_ptr[-1],
            "accepted": accepted,
            "rejected": rejected,
            "checksums": checksums,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _file_name(name: str) -> str:
    dtype = np.dtype(_ARRAYS[name][0])
    return f"{name}.{dtype.kind}{dtype.itemsize * 8}"


def _open_arrays(path: Path) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "node_ptr": np.fromfile(path / "node_ptr.i64", dtype=np.int64),
        "edge_ptr": np.fromfile(path / "edge_ptr.i64", dtype=np.int64),
    }
    for name, (dtype, columns) in _ARRAYS.items():
        file = path / _file_name(name)
        if file.stat().st_size == 0:
            arrays[name] = np.zeros((0, columns) if columns > 1 else 0, dtype=dtype)
            continue
        mm = np.memmap(file, dtype=dtype, mode="r")
        arrays[name] = mm.reshape(-1, columns) if columns > 1 else mm
    return arrays


def _collect_in_memory(chunks: Iterator) -> tuple[dict[str, np.ndarray], list[int], list]:
    numbers, edges, vectors, accepted, rejected = [], [], [], [], []
    for position, result in chunks:
        if isinstance(result, str):
            rejected.append((position, result))
            continue
        numbers.append(result[0])
        edges.append(result[1])
        vectors.append(result[2])
        accepted.append(position)
    arrays = {
        "numbers": np.concatenate(numbers) if numbers else np.zeros(0, np.int16),
        "edges": np.concatenate(edges) if edges else np.zeros((0, 2), np.int32),
        "vectors": np.concatenate(vectors) if vectors else np.zeros((0, 3), np.float32),
        "node_ptr": np.concatenate([[0], np.cumsum([len(n) for n in numbers])]).astype(np.int64),
        "edge_ptr": np.concatenate([[0], np.cumsum([len(e) for e in edges])]).astype(np.int64),
    }
    return arrays, accepted, rejected
