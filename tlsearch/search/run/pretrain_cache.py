"""Content-addressed pre-trained models: each PT job runs once and serves every search.

Layout: ``<storage>/pretrained/<key>/`` holding ``model.pt`` (and everything the PT run wrote),
``job.json`` and, written last, ``_COMPLETE.json`` (the PT metrics). ``key``
(:func:`tlsearch.jobs.identity.pretrain_key`) hashes what decides the model: the source data's
content (file bytes, or the spec string for ``matminer:``, ``generated:``...), the size, the
seed, the recipe, the architecture and the DDP worker count (when more than one); not where or
how else it ran (threads, devices, cache folders).

Concurrency: a PT job runs once cluster-wide, held by :func:`tlsearch.search.run.claims.exclusive`
on ``pretrained/<key>``: on local disk and NFS a file lock (``<key>.lock``), on object stores
(``s3://``, ``gs://``) a leased claim (``<key>.claim``, see :mod:`tlsearch.search.run.claims`). The
holder runs the job into a local ``_tmp-<key>-<uuid>/`` and moves it into place (on object
stores: uploads it with ``_COMPLETE.json`` last, so a half-uploaded model is invisible); the
others wait and then reuse it; when a holder dies, a waiter takes the claim over when its lease
runs out. Downloads into a node's local cache are under a per-node file lock.

Integrity: ``model.sha256`` (the SHA-256 of ``model.pt``) is written with the model, before
``_COMPLETE.json``, and checked before a cached model is used (once per process per file
version). A model that does not match is not used: its folder is removed with a warning naming
the file, and the PT job runs again (on object stores, a bad download is fetched again first).
Folders written before the hash was recorded are used as they are.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from tlsearch.jobs.config import JobConfig
from tlsearch.jobs.identity import pretrain_key
from tlsearch.search.run.claims import exclusive
from tlsearch.storage.locks import file_lock
from tlsearch.storage.uri import is_remote, join, resolve

logger = logging.getLogger(__name__)

COMPLETE = "_COMPLETE.json"
#: The SHA-256 (hex) of ``model.pt``, written with it.
MODEL_HASH = "model.sha256"
JobFn = Callable[[JobConfig, Path], dict[str, Any]]


@dataclass
class Pretrained:
    """A PT model ready to fine-tune from.

    Attributes:
        key: the content key.
        checkpoint: a local path of ``model.pt`` usable in this process.
        uri: where the model lives in storage.
        metrics: the PT job's metrics.
        cache_hit: whether it already existed.
    """

    key: str
    checkpoint: str
    uri: str
    metrics: dict[str, Any]
    cache_hit: bool


def ensure_pretrained(
    job: JobConfig, storage: str, run_fn: JobFn, local_cache: Path | None = None
) -> Pretrained:
    """Return the PT model of ``job``, running ``run_fn(job, folder)`` only if it is missing.

    Args:
        job: the PT job.
        storage: the search storage root (local path or URI).
        run_fn: the job function (writes ``model.pt`` into its folder, returns metrics).
        local_cache: where models from object stores are downloaded (default:
            ``~/.cache/tlsearch/pretrained``).
    """
    key = pretrain_key(job)
    uri = join(storage, "pretrained", key)
    if not is_remote(storage):
        return _ensure_local(job, key, Path(resolve(uri)[1]), run_fn)
    local_root = local_cache or Path.home() / ".cache" / "tlsearch" / "pretrained"
    return _ensure_remote(job, key, uri, local_root, run_fn)


def _ensure_local(job: JobConfig, key: str, final: Path, run_fn: JobFn) -> Pretrained:
    final.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(str(final)):  # the file lock <key>.lock beside it
        if (final / COMPLETE).is_file() and intact(final):
            logger.info("pre-trained model %s found in the cache", key)
            return Pretrained(key, str(final / "model.pt"), str(final), _read(final), True)
        tmp = final.parent / f"_tmp-{key}-{uuid.uuid4().hex[:8]}"
        metrics = _run_into(job, tmp, run_fn)
        if final.exists():  # a partial folder from before an unclean stop
            shutil.rmtree(final)
        os.replace(tmp, final)
    return Pretrained(key, str(final / "model.pt"), str(final), metrics, False)


def remove_abandoned(storage: str) -> list[str]:
    """Delete the ``pretrained/_tmp-<key>-*`` folders of PT jobs killed mid-training (local
    storage): those whose key's lock nobody holds (a running PT job holds it); returns them."""
    if is_remote(storage):
        return []
    root = Path(resolve(join(storage, "pretrained"))[1])
    if not root.is_dir():
        return []
    removed = []
    for folder in sorted(root.glob("_tmp-*")):
        key = folder.name.removeprefix("_tmp-").rsplit("-", 1)[0]
        with open(root / f"{key}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its PT job is running
            try:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        removed.append(str(folder))
    if removed:
        logger.info("removed %d folder(s) of killed PT jobs: %s", len(removed), ", ".join(removed))
    return removed


def _ensure_remote(
    job: JobConfig, key: str, uri: str, local_root: Path, run_fn: JobFn
) -> Pretrained:
    fs, path = resolve(uri)
    local_root.mkdir(parents=True, exist_ok=True)
    if _stored(fs, path):
        found = _download(key, uri, local_root)
        if found is not None:
            return found
    with exclusive(uri):  # cluster-wide: one node trains, the others wait for its upload
        if _stored(fs, path):
            found = _download(key, uri, local_root)
            if found is not None:
                return found
            logger.warning("removing the damaged pre-trained model %s from storage", uri)
            fs.delete_dir(path)
        tmp = local_root / f"_tmp-{key}-{uuid.uuid4().hex[:8]}"
        metrics = _run_into(job, tmp, run_fn)
        _upload_complete_last(tmp, fs, path)
        local = local_root / key
        with file_lock(local_root / f"{key}.lock"):
            shutil.rmtree(local, ignore_errors=True)
            os.replace(tmp, local)
    return Pretrained(key, str(local / "model.pt"), uri, metrics, False)


def _stored(fs: Any, path: str) -> bool:
    return fs.get_file_info(f"{path}/{COMPLETE}").type == pafs.FileType.File


def _download(key: str, uri: str, local_root: Path) -> Pretrained | None:
    """The stored model ``uri``, copied into this node's cache once (per-node file lock);
    None when its ``model.pt`` does not match its hash, downloaded twice (the stored one is
    damaged)."""
    fs, path = resolve(uri)
    local = local_root / key
    with file_lock(local_root / f"{key}.lock"):
        for _ in range(2):
            if not (local / COMPLETE).is_file():
                shutil.rmtree(local, ignore_errors=True)
                pafs.copy_files(path, str(local), source_filesystem=fs)
            if intact(local):
                return Pretrained(key, str(local / "model.pt"), uri, _read(local), True)
    return None


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) of models checked here


def intact(folder: Path) -> bool:
    """Whether ``folder/model.pt`` matches the hash recorded with it (True when none was
    recorded: folders of earlier versions); a mismatch removes the folder, with a warning
    naming the file."""
    recorded, model = folder / MODEL_HASH, folder / "model.pt"
    if not recorded.is_file():
        return True
    try:
        stat = model.stat()
    except FileNotFoundError:
        problem = "is missing"
    else:
        seen = (str(model), stat.st_size, stat.st_mtime_ns)
        if seen in _VERIFIED:
            return True
        if file_sha256(model) == recorded.read_text(encoding="utf-8").strip():
            _VERIFIED.add(seen)
            return True
        problem = "does not match the SHA-256 recorded with it (damaged or changed)"
    logger.warning("pre-trained model %s %s: not used; training it again", model, problem)
    shutil.rmtree(folder, ignore_errors=True)
    return False


def _run_into(job: JobConfig, folder: Path, run_fn: JobFn) -> dict[str, Any]:
    """Run the PT job into ``folder`` and mark it complete; remove the folder on failure."""
    from tlsearch.training.metrics import json_safe

    try:
        folder.mkdir(parents=True)
        metrics = json_safe(dict(run_fn(job, folder)))
        metrics.pop("checkpoint", None)
        if (folder / "model.pt").is_file():
            digest = file_sha256(folder / "model.pt")
            (folder / MODEL_HASH).write_text(digest + "\n", encoding="utf-8")
        (folder / "job.json").write_text(job.model_dump_json(indent=2), encoding="utf-8")
        (folder / COMPLETE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if not (folder / "model.pt").is_file():
        logger.warning("PT job wrote no model.pt into %s", folder)
    return metrics


def _upload_complete_last(folder: Path, fs: Any, path: str) -> None:
    fs.create_dir(path, recursive=True)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for file in sorted(files, key=lambda p: p.name == COMPLETE):
        target = f"{path}/{file.relative_to(folder).as_posix()}"
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(target) as out, file.open("rb") as src:
            shutil.copyfileobj(src, out)


def _read(folder: Path) -> dict[str, Any]:
    return json.loads((folder / COMPLETE).read_text(encoding="utf-8"))
