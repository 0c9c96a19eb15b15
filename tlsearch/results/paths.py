"""Paths that rows store (``checkpoint_uri``), found again from the folder a search is read from.

A results folder may move: copied from a cluster to a laptop, downloaded from S3. Rows store
files inside the storage relative to the storage root (:func:`stored`:
``<search>/work/<run_id>/model.pt``, ``pretrained/<key>/model.pt``), and :func:`locate` finds
them from the search folder they are read from: a relative path is joined to that folder's
parent; an absolute one (rows of earlier versions) that no longer exists is tried at the same
place under the search folder or the storage root.
"""

from __future__ import annotations

import posixpath

import pyarrow.fs as pafs

from tlsearch.storage.uri import is_remote, join, resolve

#: Folders of a storage root whose files rows name (beside the search folders).
STORAGE_FOLDERS = ("pretrained",)


def stored(uri: str, storage: str) -> str:
    """``uri`` as a row stores it: relative to ``storage`` when it lies inside it."""
    root, path = _path_of(str(storage)).rstrip("/") + "/", _path_of(uri)
    if path.startswith(root):
        return path[len(root) :]
    return uri


def locate(value: str | None, search_dir: str) -> str | None:
    """Where the file a row names as ``value`` is, read from the search folder ``search_dir``
    (``value`` itself when it exists or cannot be found elsewhere)."""
    if not value:
        return value
    root = storage_root(search_dir)
    if not is_remote(value) and not value.startswith(("/", "file://")):
        return join(root, value)  # relative to the storage root
    if _exists(value):
        return value
    parts = _path_of(value).split("/")
    name = _path_of(search_dir).rstrip("/").rsplit("/", 1)[-1]
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == name:
            candidate = join(search_dir, *parts[i + 1 :])
        elif parts[i] in STORAGE_FOLDERS:
            candidate = join(root, *parts[i:])
        else:
            continue
        if _exists(candidate):
            return candidate
    return value


def storage_root(search_dir: str) -> str:
    """The storage a search folder lies in (its parent; a URI keeps its query)."""
    text, query = str(search_dir), ""
    if is_remote(text) and "?" in text:
        text, query = text.split("?", 1)
        query = "?" + query
    return posixpath.dirname(text.rstrip("/")) + query


def _path_of(uri: str) -> str:
    return uri.split("?", 1)[0]


def _exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound
