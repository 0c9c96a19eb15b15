"""Checks that a graph cache entry is what its build wrote, before anything trains on it.

A cache entry (see :mod:`tlsearch.graphs.store`) is read back by every later run, on shared
disks too, so a truncated, overwritten or hand-edited file must not become training data. New
entries record a BLAKE2b checksum of every array file in ``meta.json``; every entry, old ones
included, is also checked for what training relies on: consistent counts and offsets, file
sizes that match them, bond endpoints inside their own structure, atomic numbers that have
CGCNN features, and finite bond vectors of plausible length. A failed check raises
:class:`CorruptEntryError` naming the file and what is wrong;
:func:`tlsearch.graphs.store.build_graph_store` then removes the entry with a warning and builds
it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

#: Array files of an entry: name -> (dtype, columns).
ARRAY_FILES: dict[str, tuple[type, int]] = {
    "numbers.i16": (np.int16, 1),
    "edges.i32": (np.int32, 2),
    "vectors.f32": (np.float32, 3),
    "node_ptr.i64": (np.int64, 1),
    "edge_ptr.i64": (np.int64, 1),
}

#: Longest plausible bond vector (Angstrom): far beyond any neighbour search's reach.
MAX_BOND_LENGTH = 1000.0

#: Structures checked per block when reading the arrays (bounds the memory of the edge check).
_BLOCK = 4096


class CorruptEntryError(ValueError):
    """A graph cache entry that does not hold what its build wrote (names the file)."""


def file_checksum(path: Path) -> str:
    """BLAKE2b (20 bytes) hex of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_meta(entry: Path) -> dict[str, Any]:
    """The entry's ``meta.json``.

    Raises:
        CorruptEntryError: missing, not JSON or not an object (names the file).
    """
    path = entry / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptEntryError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict):
        raise CorruptEntryError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def verify_entry(
    entry: Path, num_structures: int, cache_format: int, n_species: int, min_bond: float = 0.0
) -> dict:
    """Check the entry at ``entry`` for ``num_structures`` input structures; returns its meta.

    Args:
        entry: the entry's folder.
        num_structures: structures the caller's dataset has (the key hashes them, so an entry
            for that key must have been built from as many).
        cache_format: the format this code writes.
        n_species: rows of the atom feature table (atomic numbers must index it).
        min_bond: shortest bond a build accepts (Angstrom).

    Raises:
        CorruptEntryError: the first problem found, naming the file.
    """
    meta = read_meta(entry)
    where = entry / "meta.json"
    try:
        accepted = [int(p) for p in meta["accepted"]]
        rejected = [(int(p), str(r)) for p, r in meta["rejected"]]
        fields = (meta["format"], meta["num_structures"], meta["num_atoms"], meta["num_edges"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptEntryError(f"{where}: missing or malformed field ({exc!r})") from exc
    fmt, n_struct, n_atoms, n_edges = fields
    if fmt != cache_format:
        raise CorruptEntryError(f"{where}: format {fmt!r}, this version reads {cache_format}")
    if n_struct != num_structures:
        raise CorruptEntryError(f"{where}: built for {n_struct} structures, not {num_structures}")
    positions = sorted([*accepted, *(p for p, _ in rejected)])
    if positions != list(range(num_structures)):
        raise CorruptEntryError(f"{where}: accepted/rejected positions do not cover 0..n-1")
    checksums = meta.get("checksums")
    if checksums is not None:
        for name in ARRAY_FILES:
            expected = checksums.get(name) if isinstance(checksums, dict) else None
            file = entry / name
            if not file.is_file():
                raise CorruptEntryError(f"{file}: missing")
            if expected is None or file_checksum(file) != expected:
                raise CorruptEntryError(f"{file}: checksum differs from the one its build wrote")
    _check_arrays(entry, len(accepted), int(n_atoms), int(n_edges), n_species, min_bond)
    return meta


def _read(entry: Path, name: str, rows: int) -> np.ndarray:
    dtype, columns = ARRAY_FILES[name]
    file = entry / name
    if not file.is_file():
        raise CorruptEntryError(f"{file}: missing")
    expected = rows * columns * np.dtype(dtype).itemsize
    size = file.stat().st_size
    if size != expected:
        raise CorruptEntryError(f"{file}: {size} bytes, expected {expected} ({rows} rows)")
    if rows == 0:
        return np.zeros((0, columns) if columns > 1 else 0, dtype=dtype)
    mm = np.memmap(file, dtype=dtype, mode="r")
    return mm.reshape(-1, columns) if columns > 1 else mm


def _check_arrays(
    entry: Path, n: int, n_atoms: int, n_edges: int, n_species: int, min_bond: float
) -> None:
    node_ptr = _read(entry, "node_ptr.i64", n + 1)
    edge_ptr = _read(entry, "edge_ptr.i64", n + 1)
    for name, ptr, total in (
        ("node_ptr.i64", node_ptr, n_atoms),
        ("edge_ptr.i64", edge_ptr, n_edges),
    ):
        if ptr[0] != 0 or ptr[-1] != total or np.any(np.diff(ptr) < 0):
            raise CorruptEntryError(f"{entry / name}: offsets are not 0..{total}, non-decreasing")
    if np.any(np.diff(node_ptr) < 1):
        raise CorruptEntryError(f"{entry / 'node_ptr.i64'}: a structure without atoms")
    numbers = _read(entry, "numbers.i16", n_atoms)
    if n_atoms and (numbers.min() < 1 or numbers.max() >= n_species):
        raise CorruptEntryError(
            f"{entry / 'numbers.i16'}: atomic numbers outside 1..{n_species - 1}"
        )
    edges = _read(entry, "edges.i32", n_edges)
    vectors = _read(entry, "vectors.f32", n_edges)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        e0, e1 = int(edge_ptr[start]), int(edge_ptr[stop])
        if e0 == e1:
            continue
        atoms = np.diff(node_ptr[start : stop + 1])
        limit = np.repeat(atoms, np.diff(edge_ptr[start : stop + 1]))[:, None]
        block = edges[e0:e1]
        if np.any(block < 0) or np.any(block >= limit):
            raise CorruptEntryError(
                f"{entry / 'edges.i32'}: a bond endpoint outside its structure "
                f"(structures {start}..{stop - 1})"
            )
        lengths = np.linalg.norm(np.asarray(vectors[e0:e1], dtype=np.float64), axis=1)
        if not np.all(lengths <= MAX_BOND_LENGTH):  # NaN fails too
            raise CorruptEntryError(
                f"{entry / 'vectors.f32'}: bond vectors that are not finite or longer than "
                f"{MAX_BOND_LENGTH:g} A (structures {start}..{stop - 1})"
            )
        if np.any(lengths < min_bond):
            raise CorruptEntryError(
                f"{entry / 'vectors.f32'}: bonds shorter than {min_bond} A (structures "
                f"{start}..{stop - 1}; built before such structures were rejected)"
            )
