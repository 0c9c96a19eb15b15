"""Seed-run results as an append-only folder of immutable one-row Parquet files.

Layout: ``<storage>/<search name>/runs/<run_id>.parquet``. ``run_id`` is deterministic (the
run-config hash and the seed), so a retried run overwrites its own file and never adds a
duplicate. Writes are atomic:

- local disk / NFS: written to ``_tmp-<uuid>.parquet.part`` in the same folder, flushed to disk
  (``fsync``), then ``os.replace``d (atomic on one POSIX filesystem) and the folder ``fsync``ed,
  so a crash never leaves a renamed but empty file; a writer killed mid-way leaves only the
  ``_tmp-`` file;
- object stores (``s3://``, ``gs://``): written straight to the final key (an upload becomes
  visible only when it completes; there is no rename).

Temporary files are invisible to every reader: ``pyarrow.dataset`` (so ``pd.read_parquet``)
skips names starting with ``_`` or ``.``, and they do not end in ``.parquet``, so globs such as
DuckDB's ``read_parquet('runs/*.parquet')`` miss them. The driver deletes those of killed
writers when a search starts (:meth:`RunStore.remove_stale_temp`).

Unreadable rows (a truncated or damaged file, e.g. after a disk fault or a bad copy) are moved
aside by the readers to ``runs/_bad/<name>`` with a warning naming both paths
(:func:`set_aside_unreadable`), never read and never deleted: the folder reads as if the row
were missing, and ``--resume`` runs that seed-run again.

Schemas: readers get :data:`~tlsearch.results.schema.RUN_SCHEMA` (files written before a column
was added read with nulls) plus any column a newer writer added (:func:`read_from`). When a
search starts, the driver rewrites its files of older schema versions to the current one
(:meth:`RunStore.upgrade_old_files`), so readers that take the schema from one file (pandas'
``pd.read_parquet(folder)``, DuckDB without ``union_by_name=true``) see every column too.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tlsearch.results.schema import RUN_SCHEMA, SCHEMA_VERSION, conform, row_table
from tlsearch.storage.atomic import TEMP_PREFIX, atomic_write
from tlsearch.storage.uri import join, resolve

logger = logging.getLogger(__name__)

#: Temporary files end in ``.part``, never ``.parquet``, so ``runs/*.parquet`` globs miss them.
TEMP_SUFFIX = ".parquet.part"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
COLUMN_SET = frozenset(RUN_SCHEMA.names)


# --- atomic Parquet writes ---------------------------------------------------------------------


def write_table_atomic(table: pa.Table, uri: str | Path) -> str:
    """Write ``table`` to ``uri`` so that readers see either nothing or the whole file.

    Returns:
        the final path (inside its filesystem).
    """
    fs, path = resolve(uri)
    return write_to(table, fs, path)


def write_to(table: pa.Table, fs: pafs.FileSystem, path: str) -> str:
    """:func:`write_table_atomic` on an already resolved filesystem and path."""
    return atomic_write(fs, path, lambda out: pq.write_table(table, out), suffix=TEMP_SUFFIX)


def read_runs(uri: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Every row under ``uri`` (a ``runs/`` folder) with the canonical schema; empty if none."""
    fs, path = resolve(uri)
    return read_from(fs, path, columns)


def read_from(fs: pafs.FileSystem, path: str, columns: list[str] | None = None) -> pa.Table:
    """:func:`read_runs` on an already resolved filesystem and path.

    The table has every :data:`RUN_SCHEMA` column (with its type; nulls where a file predates
    it), then any other column some file holds (written by a newer tlsearch), in file order.
    Unreadable files of a folder are moved aside first (:func:`set_aside_unreadable`).
    """
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return RUN_SCHEMA.empty_table().select(columns or RUN_SCHEMA.names)
    if info.type == pafs.FileType.File:
        return _read_dataset(ds.FileSystemDatasetFactory(fs, [path], ds.ParquetFileFormat()),
                             columns)  # fmt: skip
    try:
        return _read_dataset(_folder_factory(fs, path), columns)
    except (pa.ArrowException, OSError):
        if not set_aside_unreadable(fs, path):
            raise  # not a damaged file (an I/O error): nothing was moved
    return _read_dataset(_folder_factory(fs, path), columns)


def _folder_factory(fs: pafs.FileSystem, path: str) -> ds.FileSystemDatasetFactory:
    selector = pafs.FileSelector(path, recursive=True)
    options = ds.FileSystemFactoryOptions(selector_ignore_prefixes=[".", "_"])
    return ds.FileSystemDatasetFactory(fs, selector, ds.ParquetFileFormat(), options)


def _read_dataset(factory: ds.FileSystemDatasetFactory, columns: list[str] | None) -> pa.Table:
    found = factory.inspect(promote_options="permissive", fragments=None)
    dataset = factory.finish(union_schema(found))
    return dataset.to_table(columns=columns)


# --- unreadable rows ---------------------------------------------------------------------------

#: Where unreadable row files go, inside ``runs/`` (readers skip names starting with ``_``).
BAD_FOLDER = "_bad"


def readable(fs: pafs.FileSystem, path: str) -> bool:
    """Whether the Parquet file ``path`` parses whole.

    The bytes are read first, so an I/O error (a network failure on an object store) raises
    instead of calling a good file unreadable.
    """
    with fs.open_input_file(path) as stream:
        data = stream.read()
    try:
        pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError):
        return False
    return True


def set_aside(fs: pafs.FileSystem, path: str) -> str:
    """Move the unreadable row file ``path`` to ``<its folder>/_bad/<name>`` (a suffix keeps
    an earlier one of the same name) with a warning naming both; returns the new path."""
    folder, name = path.rsplit("/", 1)
    target = f"{folder}/{BAD_FOLDER}/{name}"
    fs.create_dir(f"{folder}/{BAD_FOLDER}", recursive=True)
    if fs.get_file_info(target).type != pafs.FileType.NotFound:
        target = f"{target}.{uuid.uuid4().hex[:8]}"
    fs.move(path, target)
    logger.warning(
        "unreadable result row %s (truncated or damaged) moved aside to %s; its seed-run "
        "counts as not run: --resume runs it again", path, target,
    )  # fmt: skip
    return target


def set_aside_unreadable(fs: pafs.FileSystem, path: str) -> list[str]:
    """Move every unreadable ``*.parquet`` file of the folder ``path`` aside
    (:func:`set_aside`); returns their new paths."""
    moved = []
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        parts = info.path[len(path) :].strip("/").split("/")
        if info.type != pafs.FileType.File or any(p.startswith(("_", ".")) for p in parts):
            continue
        if not readable(fs, info.path):
            moved.append(set_aside(fs, info.path))
    return moved


def union_schema(found: pa.Schema) -> pa.Schema:
    """:data:`RUN_SCHEMA` followed by the columns of ``found`` it does not have."""
    extra = [field.with_nullable(True) for field in found if field.name not in COLUMN_SET]
    return pa.schema([*RUN_SCHEMA, *extra], metadata=RUN_SCHEMA.metadata)


# --- the store of one search -------------------------------------------------------------------


class RunStore:
    """The ``runs/`` folder of one search: write, look up and read seed-run rows.

    Args:
        uri: the ``runs/`` folder (local path, ``file://``, ``s3://`` or ``gs://``).
    """

    def __init__(self, uri: str | Path) -> None:
        self.uri = str(uri)
        self.fs, self.path = resolve(uri)

    @classmethod
    def for_search(cls, storage: str | Path, search_name: str) -> RunStore:
        """The store at ``<storage>/<search_name>/runs``."""
        return cls(join(storage, search_name, "runs"))

    def file_for(self, run_id: str) -> str:
        """Path (inside the filesystem) of ``run_id``'s file."""
        if not _RUN_ID.match(run_id):
            raise ValueError(
                f"run_id {run_id!r} must be letters, digits, '.', '_' or '-' and not start "
                "with '_' or '.'"
            )
        return f"{self.path}/{run_id}.parquet"

    def write(self, row: Mapping[str, Any]) -> str:
        """Validate ``row`` and write it as ``<run_id>.parquet`` (replacing an earlier one)."""
        table = row_table(row)
        final = self.file_for(str(row["run_id"]))
        write_to(table, self.fs, final)
        logger.debug("wrote result row %s", final)
        return final

    def exists(self, run_id: str) -> bool:
        """Whether ``run_id`` has a (complete) row."""
        return self.fs.get_file_info(self.file_for(run_id)).type == pafs.FileType.File

    def read_row(self, run_id: str) -> dict[str, Any] | None:
        """``run_id``'s row as a dict, or ``None`` when it has none (an unreadable file is
        moved aside: :func:`set_aside`)."""
        if not self.exists(run_id):
            return None
        path = self.file_for(run_id)
        try:
            table = pq.read_table(path, filesystem=self.fs)
        except (pa.ArrowException, OSError):
            if readable(self.fs, path):
                raise
            set_aside(self.fs, path)
            return None
        rows = conform(table).to_pylist()
        return rows[0] if rows else None

    def table(self, columns: list[str] | None = None) -> pa.Table:
        """All rows of this search."""
        return read_from(self.fs, self.path, columns)

    def rows(self) -> list[dict[str, Any]]:
        """All rows as dicts."""
        return self.table().to_pylist()

    def remove_stale_temp(self, older_than_s: float = 3600.0) -> int:
        """Delete ``_tmp-`` files left by killed writers (local only); returns how many.

        Only files not modified for ``older_than_s`` seconds: a live writer's file is younger.
        Temporary files of earlier tlsearch versions (``_tmp-<uuid>.parquet``) go too.
        """
        if not isinstance(self.fs, pafs.LocalFileSystem) or not os.path.isdir(self.path):
            return 0
        removed = 0
        for name in os.listdir(self.path):
            full = os.path.join(self.path, name)
            if not name.startswith(TEMP_PREFIX):
                continue
            try:
                if time.time() - os.path.getmtime(full) > older_than_s:
                    os.remove(full)
                    removed += 1
            except FileNotFoundError:  # its writer renamed or removed it meanwhile
                continue
        if removed:
            logger.info("removed %d stale temporary file(s) from %s", removed, self.path)
        return removed

    def upgrade_old_files(self) -> int:
        """Rewrite rows written with an older schema version in the current one; returns how
        many files were rewritten. Unreadable files are moved aside (:func:`set_aside`).

        Readers that take the schema from one file (``pd.read_parquet(folder)``) then see every
        column. Rows keep their values (new columns are null); a file with columns this version
        does not know (a newer writer) is left as it is.
        """
        if self.fs.get_file_info(self.path).type != pafs.FileType.Directory:
            return 0
        selector = pafs.FileSelector(self.path, recursive=False)
        upgraded = 0
        for info in self.fs.get_file_info(selector):
            name = info.base_name
            if info.type != pafs.FileType.File or name.startswith(("_", ".")):
                continue
            if not name.endswith(".parquet"):
                continue
            try:
                schema = pq.read_schema(info.path, filesystem=self.fs)
            except (pa.ArrowException, OSError):
                if readable(self.fs, info.path):
                    raise
                set_aside(self.fs, info.path)
                continue
            version = (schema.metadata or {}).get(b"tlsearch.schema_version", b"").decode()
            if version == SCHEMA_VERSION or not set(schema.names) <= COLUMN_SET:
                continue
            table = pq.read_table(info.path, filesystem=self.fs)
            write_to(conform(table), self.fs, info.path)
            upgraded += 1
        if upgraded:
            logger.info(
                "rewrote %d row file(s) of older schema versions in %s with schema %s",
                upgraded, self.path, SCHEMA_VERSION,
            )  # fmt: skip
        return upgraded
