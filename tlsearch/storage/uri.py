"""Storage locations: local paths and URIs (``s3://``, ``gs://``...) as pyarrow filesystems."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs


def is_remote(uri: str | Path) -> bool:
    """Whether ``uri`` names an object store or another non-local filesystem (``scheme://``)."""
    text = str(uri)
    return "://" in text and not text.startswith("file://")


def resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it (local paths made absolute)."""
    text = str(uri)
    if is_remote(text):
        return pafs.FileSystem.from_uri(text)
    if text.startswith("file://"):
        text = text[len("file://") :]
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(text))


def join(uri: str | Path, *parts: str) -> str:
    """``uri/part/...`` for local paths and URIs alike.

    A URI's query (``s3://bucket/x?endpoint_override=host:9000&scheme=http``, how pyarrow
    reaches MinIO and other S3-compatible stores) stays at the end.
    """
    text, query = str(uri), ""
    if is_remote(text) and "?" in text:
        text, query = text.split("?", 1)
        query = "?" + query
    text = text.rstrip("/")
    return "/".join([text, *(p.strip("/") for p in parts)]) + query


def upload_dir(local_dir: Path, uri: str) -> None:
    """Copy a local folder to ``uri`` (no-op when ``uri`` is that folder)."""
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem) and os.path.abspath(local_dir) == path:
        return
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(local_dir), path, destination_filesystem=fs)


def read_text(uri: str | Path) -> str | None:
    """A small text file's content (``plan.json``, ``spec.yaml``), or ``None`` if it is missing."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")
