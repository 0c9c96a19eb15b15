"""Atomic writes: readers see either nothing or the whole file.

- local disk / NFS: written to ``_tmp-<uuid><suffix>`` in the same folder, flushed to disk
  (``fsync``), then ``os.replace``d (atomic on one POSIX filesystem) and the folder ``fsync``ed,
  so a crash never leaves a renamed but empty file; a writer killed mid-way leaves only the
  ``_tmp-`` file (readers such as ``pyarrow.dataset`` skip names starting with ``_``);
- object stores (``s3://``, ``gs://``): written straight to the final key (an upload becomes
  visible only when it completes; there is no rename).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import BinaryIO

import pyarrow.fs as pafs

TEMP_PREFIX = "_tmp-"


def atomic_write(
    fs: pafs.FileSystem, path: str, write: Callable[[BinaryIO], None], suffix: str = ".part"
) -> str:
    """Create ``path`` on ``fs`` with ``write(stream)``, atomically; returns ``path``.

    Args:
        fs, path: where (the folder is created).
        write: writes the content into the binary stream it gets.
        suffix: the end of the temporary file's name (keep it off the final names' pattern, so
            globs such as ``*.parquet`` miss it).
    """
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if not isinstance(fs, pafs.LocalFileSystem):
        with fs.open_output_stream(path) as out:
            write(out)
        return path
    tmp = os.path.join(parent, f"{TEMP_PREFIX}{uuid.uuid4().hex}{suffix}")
    try:
        with open(tmp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(parent)
    return path


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (best effort: some filesystems refuse it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
