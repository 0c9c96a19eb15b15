"""Cluster-wide exclusive claims: one holder at a time for a named job, on every node.

:func:`exclusive` holds a storage location exclusively:

- local storage (NFS included): an ``flock`` on ``<uri>.lock`` (the kernel releases it when the
  holder dies);
- object storage: a *claim*, a small marker object ``<uri>.claim`` created only if absent, held
  under a lease. The holder renews it every :data:`RENEW_S` seconds from a background thread
  (each renewal changes the marker); a waiter polls it every :data:`POLL_S` seconds and takes
  it over when it stayed unchanged for a whole lease (:data:`LEASE_S`, by the waiter's own
  clock, so clocks of different nodes need not agree): its holder died. The holder deletes it
  when done. Every step is a conditional write, so two waiters never both win:

  - ``s3://`` with conditional writes (AWS S3 since 2024, MinIO, moto): ``PutObject`` with
    ``If-None-Match: *`` creates, ``If-Match: <etag>`` renews, takes over and deletes
    (:class:`S3ClaimStore`, through ``boto3``; pyarrow cannot send these headers). Markers
    live beside the data, so this holds across searches and clusters sharing the bucket;
  - other object stores, or S3 without ``boto3`` or conditional writes (checked once per
    bucket): a store the caller passes (the search passes a Ray actor's,
    :class:`tlsearch.search.run.claims.ActorClaimStore`; one cluster);
  - neither: a per-node file lock, with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlparse

from tlsearch.storage.locks import file_lock
from tlsearch.storage.uri import is_remote, resolve

logger = logging.getLogger(__name__)

#: Seconds a claim stays valid without a renewal (a holder that dies frees it after this).
LEASE_S = 60.0
#: Seconds between a holder's renewals.
RENEW_S = 15.0
#: Seconds between a waiter's looks at the claim.
POLL_S = 2.0


class ClaimHeldError(RuntimeError):
    """A claim asked for with ``refuse_live`` is held by a live holder (named in the message;
    :attr:`holder` says who, as the marker records it)."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"claim {name} is held by {holder}")
        self.holder = holder


class ClaimStore(Protocol):
    """Atomic operations on named markers; a ``version`` changes with every write."""

    def create(self, name: str, body: str) -> str | None:
        """Create ``name`` if it does not exist; its version, or ``None`` if it existed."""

    def read(self, name: str) -> tuple[str, str] | None:
        """``(body, version)`` of ``name``, or ``None`` if it does not exist."""

    def replace(self, name: str, body: str, version: str) -> str | None:
        """Overwrite ``name`` if it is still at ``version``; the new version, or ``None``."""

    def delete(self, name: str, version: str) -> None:
        """Delete ``name`` if it is still at ``version`` (otherwise leave it)."""


# --- the lease ------------------------------------------------------------------------------


class Claim:
    """A lease on marker ``name`` of ``store``: :meth:`acquire` waits for it, :meth:`release`
    gives it back; while held, a thread renews it.

    Args:
        store: where the marker lives.
        name: the marker's name (unique per claimed thing).
        lease_s: seconds the claim lives without a renewal.
        renew_s: seconds between renewals (well under ``lease_s``).
        poll_s: seconds between a waiter's looks.
    """

    def __init__(
        self,
        store: ClaimStore,
        name: str,
        lease_s: float = LEASE_S,
        renew_s: float = RENEW_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.store, self.name = store, name
        self.lease_s, self.renew_s, self.poll_s = lease_s, renew_s, poll_s
        self.owner = uuid.uuid4().hex
        self.since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.took_over = False
        self._version: str | None = None
        self._renewals = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """Whether this claim believes it holds the marker (``False`` once lost)."""
        return self._version is not None

    def _body(self) -> str:
        return json.dumps(
            {
                "owner": self.owner,
                "holder": f"{socket.gethostname()}/pid {os.getpid()}",
                "since": self.since,
                "lease_s": self.lease_s,
                "renewals": self._renewals,
            }
        )

    def acquire(self, timeout_s: float | None = None, refuse_live: bool = False) -> None:
        """Wait until this process holds the claim, then start renewing it.

        Args:
            timeout_s: give up after this many seconds.
            refuse_live: give up as soon as the holder is seen alive (its marker renewed),
                which takes up to one renewal interval; a dead holder's claim is still taken
                over after a whole lease.

        Raises:
            TimeoutError: ``timeout_s`` passed first.
            ClaimHeldError: ``refuse_live`` and the holder renewed the claim.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen: tuple[str, float] | None = None  # (version, when first seen) of another's claim
        waiting_logged = False
        while True:
            current = self.store.read(self.name)
            if current is None:
                self._version = self.store.create(self.name, self._body())
                if self._version is not None:
                    break
                current = self.store.read(self.name)  # created by someone else meanwhile
            if current is None:  # and already released: try again
                continue
            body, version = current
            now = time.monotonic()
            if seen is not None and seen[0] != version and refuse_live:
                raise ClaimHeldError(self.name, _holder_of(body))
            if seen is None or seen[0] != version:
                seen = (version, now)
            elif now - seen[1] >= _lease_of(body, self.lease_s):
                self._version = self.store.replace(self.name, self._body(), version)
                if self._version is not None:
                    self.took_over = True
                    logger.warning(
                        "claim %s: its holder (%s) renewed nothing for %.0f s: taken over",
                        self.name, _holder_of(body), now - seen[1],
                    )  # fmt: skip
                    break
                seen = None
            if not waiting_logged:
                logger.info("claim %s held by %s: waiting", self.name, _holder_of(body))
                waiting_logged = True
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"claim {self.name} still held by {_holder_of(body)}")
            time.sleep(self.poll_s * random.uniform(0.75, 1.25))
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True, name="claim-renew")
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_s):
            with self._lock:
                if self._version is None:
                    return
                try:
                    self._renewals += 1
                    new = self.store.replace(self.name, self._body(), self._version)
                except Exception as exc:  # a network hiccup: try again at the next renewal
                    logger.warning("claim %s: renewal failed (%s); retrying", self.name, exc)
                    continue
                if new is None:
                    logger.error(
                        "claim %s lost: another process took it over (this one renewed "
                        "nothing for a whole lease); both may now run its job",
                        self.name,
                    )
                self._version = new

    def release(self) -> None:
        """Stop renewing and delete the marker (if it is still this claim's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            version, self._version = self._version, None
        if version is not None:
            try:
                self.store.delete(self.name, version)
            except Exception as exc:  # it expires by itself
                logger.warning("claim %s: could not delete it (%s)", self.name, exc)

    def __enter__(self) -> Claim:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _record(body: str) -> dict:
    try:
        record = json.loads(body)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _lease_of(body: str, default: float) -> float:
    """The lease its holder announced (a waiter with other settings still respects it)."""
    value = _record(body).get("lease_s")
    return float(value) if isinstance(value, (int, float)) and value > 0 else default


def _holder_of(body: str) -> str:
    record = _record(body)
    holder = str(record.get("holder", "another process"))
    return f"{holder} since {record['since']}" if record.get("since") else holder


# --- stores ---------------------------------------------------------------------------------


class S3ClaimStore:
    """Markers as S3 objects, written with conditional requests (``boto3``).

    Args:
        client: a ``boto3`` S3 client.
        bucket: the bucket; names are keys in it.
    """

    MISSED = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412"}

    def __init__(self, client: object, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def _missed(self, exc: Exception) -> bool:
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return code in self.MISSED or status in {"404", "409", "412"}

    def _put(self, name: str, body: str, **condition: str) -> str | None:
        try:
            out = self.client.put_object(
                Bucket=self.bucket, Key=name, Body=body.encode(), **condition
            )
        except Exception as exc:
            if self._missed(exc):
                return None
            raise
        return str(out["ETag"])

    def create(self, name: str, body: str) -> str | None:
        return self._put(name, body, IfNoneMatch="*")

    def read(self, name: str) -> tuple[str, str] | None:
        try:
            out = self.client.get_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if self._missed(exc):
                return None
            raise
        return out["Body"].read().decode(), str(out["ETag"])

    def replace(self, name: str, body: str, version: str) -> str | None:
        return self._put(name, body, IfMatch=version)

    def delete(self, name: str, version: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name, IfMatch=version)
        except Exception as exc:
            if not self._missed(exc):
                raise

    def conditional_writes_work(self, prefix: str) -> bool:
        """Whether the store refuses a second create and a replace of a wrong version (some
        S3-compatible stores ignore the headers; claims would then not be exclusive)."""
        name = f"{prefix.rstrip('/')}/.claim-probe-{uuid.uuid4().hex[:12]}"
        try:
            version = self.create(name, "probe")
            if version is None:
                return False
            ok = self.create(name, "again") is None
            ok = ok and self.replace(name, "stale", '"0-not-its-etag"') is None
            self.delete(name, version)
            return ok
        except Exception as exc:
            logger.warning("claims: could not check conditional writes on S3 (%s)", exc)
            return False


# --- choosing the mechanism -----------------------------------------------------------------


def exclusive(
    uri: str, other_store: Callable[[], ClaimStore | None] | None = None
) -> contextlib.AbstractContextManager[object]:
    """Hold ``uri`` (a storage location) exclusively, cluster-wide, while the block runs.

    Local storage: an ``flock`` on ``<uri>.lock``. Object storage: a :class:`Claim` on
    ``<uri>.claim`` (S3 conditional writes, else the store ``other_store()`` returns, else a
    per-node file lock).
    """
    if not is_remote(uri):
        path = Path(resolve(uri)[1] + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        return file_lock(path)
    store, name = claim_store(uri, other_store)
    if store is None:
        return _node_lock(name)
    return Claim(store, name)


def claim_store(
    uri: str, other_store: Callable[[], ClaimStore | None] | None = None
) -> tuple[ClaimStore | None, str]:
    """Where the claim of ``uri`` (an object-store location) lives, and its marker's name."""
    url = urlparse(uri)
    key = f"{url.path.strip('/')}.claim"
    if url.scheme == "s3":
        s3 = _s3_store(uri)
        if s3 is not None:
            return s3, key
    store = other_store() if other_store is not None else None
    if store is not None:
        return store, f"{url.scheme}://{url.netloc}/{key}"
    return None, f"{url.netloc}/{key}"


_S3_CHECKED: dict[tuple[str | None, str], bool] = {}


def _s3_store(uri: str) -> S3ClaimStore | None:
    """An :class:`S3ClaimStore` for ``uri``'s bucket, if ``boto3`` is there and the store
    honours conditional writes (checked once per endpoint and bucket in each process)."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        logger.info("claims: boto3 is not installed; S3 claims cannot use conditional writes")
        return None
    url = urlparse(uri)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    kwargs: dict[str, str] = {}
    if "endpoint_override" in query:
        endpoint = query["endpoint_override"]
        if "://" not in endpoint:
            endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
        kwargs["endpoint_url"] = endpoint
    if "region" in query:
        kwargs["region_name"] = query["region"]
    if url.username:
        kwargs["aws_access_key_id"] = unquote(url.username)
        kwargs["aws_secret_access_key"] = unquote(url.password or "")
    bucket = url.hostname or ""
    store = S3ClaimStore(_s3_client(tuple(sorted(kwargs.items()))), bucket)
    checked = (kwargs.get("endpoint_url"), bucket)
    if checked not in _S3_CHECKED:
        _S3_CHECKED[checked] = store.conditional_writes_work(url.path.strip("/"))
        if not _S3_CHECKED[checked]:
            logger.warning(
                "claims: %s does not honour S3 conditional writes",
                checked[0] or f"s3://{bucket}",
            )
    return store if _S3_CHECKED[checked] else None


@functools.lru_cache(maxsize=16)
def _s3_client(kwargs: tuple[tuple[str, str], ...]) -> object:
    """One ``boto3`` S3 client per endpoint and credentials in a process (they are
    thread-safe, and slow to make)."""
    import boto3

    return boto3.client("s3", **dict(kwargs))


@contextlib.contextmanager
def _node_lock(name: str) -> Iterator[None]:
    logger.warning(
        "claim %s: no S3 conditional writes and no claim store: locked on this node only", name
    )
    folder = Path(tempfile.gettempdir()) / "tlsearch-locks"
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / (name.replace("/", "_") + ".lock")):
        yield
