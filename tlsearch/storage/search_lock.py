"""One driver per search: a second driver of the same search (same storage and name) is refused.

:func:`one_driver` holds ``<search folder>/locks/driver`` while a driver runs or resumes a
search, and refuses another driver with :class:`SearchBusyError`, naming the holder (host, pid,
start time):

- local storage (NFS included): an ``flock`` on ``locks/driver.lock``, which also holds the
  holder's host, pid and start time. The kernel releases it when the holder dies, so a dead
  driver's lock is free at once;
- object storage with S3 conditional writes: a leased claim on ``locks/driver.claim``
  (:class:`tlsearch.storage.claims.Claim`). A second driver watches the claim for up to one
  renewal interval: a renewed claim (a live driver) is refused, one unchanged for a whole lease
  (its driver died) is taken over;
- other object stores: an ``flock`` in this node's temporary folder (drivers started on other
  machines are not seen; a warning says so).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from tlsearch.storage.claims import Claim, ClaimHeldError, claim_store
from tlsearch.storage.uri import is_remote, join, resolve

logger = logging.getLogger(__name__)


class SearchBusyError(ValueError):
    """Another driver is running the search (its host, pid and start time in the message)."""


@contextlib.contextmanager
def one_driver(storage: str, name: str) -> Iterator[None]:
    """Hold search ``name`` of ``storage`` as its only driver while the block runs.

    Raises:
        SearchBusyError: another live driver holds it.
    """
    uri = join(storage, "locks", f"{name}.driver")
    if not is_remote(storage):
        path = Path(resolve(uri)[1] + ".lock")
        with _flock(path, name):
            yield
        return
    store, marker = claim_store(uri)
    if store is None:
        logger.warning(
            "search %s: the storage has no S3 conditional writes: a second driver of this "
            "search is refused on this machine only", name,
        )  # fmt: skip
        folder = Path(tempfile.gettempdir()) / "tlsearch-locks"
        with _flock(folder / (marker.replace("/", "_") + ".lock"), name):
            yield
        return
    claim = Claim(store, marker)
    logger.info("search %s: taking its driver lock %s", name, marker)
    try:
        claim.acquire(refuse_live=True)
    except ClaimHeldError as exc:
        raise _busy(name, exc.holder, marker) from None
    try:
        yield
    finally:
        claim.release()


@contextlib.contextmanager
def _flock(path: Path, name: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            raise _busy(name, _holder(handle.read()), str(path)) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(_me()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _me() -> dict[str, object]:
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": since}


def _holder(text: str) -> str:
    try:
        record = json.loads(text)
        return f"{record['host']}/pid {record['pid']} since {record['since']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _busy(name: str, holder: str, lock: str) -> SearchBusyError:
    return SearchBusyError(
        f"search {name!r} is already being run by another driver ({holder}; lock {lock}): "
        "one driver per search. Wait for it to end (or stop it) and then --resume, or run "
        "this one under another --name or --storage"
    )
