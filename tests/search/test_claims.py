"""Cluster-wide claims (:mod:`tlsearch.search.run.claims`) on a local S3 server (moto): conditional
writes, a lease that a live holder keeps, a waiter that takes over when the holder is killed,
mutual exclusion under contention, and the Ray actor store used where S3 cannot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.search.conftest import REPO
from tlsearch.search.run.claims import ActorClaimStore, exclusive
from tlsearch.storage import claims
from tlsearch.storage.claims import Claim, S3ClaimStore

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "claims-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    """``http://host:port`` of a local S3 server with one bucket."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def store(s3_endpoint) -> S3ClaimStore:
    return S3ClaimStore(boto3.client("s3", endpoint_url=s3_endpoint), BUCKET)


def test_s3_markers_are_written_only_under_their_condition(store):
    first = store.create("a/x.claim", "one")
    assert first is not None
    assert store.create("a/x.claim", "two") is None  # If-None-Match: *
    assert store.read("a/x.claim") == ("one", first)
    assert store.replace("a/x.claim", "stale", '"not-its-etag"') is None  # If-Match
    second = store.replace("a/x.claim", "three", first)
    assert second is not None and second != first
    store.delete("a/x.claim", first)  # an old version deletes nothing
    assert store.read("a/x.claim") == ("three", second)
    store.delete("a/x.claim", second)
    assert store.read("a/x.claim") is None
    assert store.conditional_writes_work("a")


def test_a_live_holder_keeps_its_claim_past_its_lease(store):
    holder = Claim(store, "live.claim", lease_s=1.0, renew_s=0.2, poll_s=0.1)
    holder.acquire()
    waiter = Claim(store, "live.claim", lease_s=1.0, poll_s=0.1)
    with pytest.raises(TimeoutError):
        waiter.acquire(timeout_s=3.0)  # three leases: renewals kept it
    holder.release()
    start = time.monotonic()
    waiter.acquire(timeout_s=5.0)
    assert time.monotonic() - start < 1.0 and not waiter.took_over  # released, not expired
    waiter.release()
    assert store.read("live.claim") is None


HOLDER = textwrap.dedent(
    """
    import sys, time
    import boto3
    from tlsearch.storage.claims import Claim, S3ClaimStore
    store = S3ClaimStore(boto3.client("s3", endpoint_url=sys.argv[1]), sys.argv[2])
    Claim(store, "dead.claim", lease_s=2.0, renew_s=0.3, poll_s=0.1).acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_a_waiting_claimant_takes_over_when_the_holder_is_killed(store, s3_endpoint):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, s3_endpoint, BUCKET],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        waiter = Claim(store, "dead.claim", lease_s=30.0, poll_s=0.1)  # the holder's 2 s rules
        got: list[float] = []
        thread = threading.Thread(target=lambda: (waiter.acquire(), got.append(time.monotonic())))
        thread.start()
        time.sleep(3.0)  # longer than the lease: the live holder renewed it
        assert not got, "taken while its holder was alive"
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        thread.join(timeout=20)
        assert got, "the waiter never got the claim"
        assert waiter.took_over
        assert 1.5 < got[0] - killed < 6.0  # about one lease after the last renewal
        holder = store.read("dead.claim")
        assert holder is not None and waiter.owner in holder[0]
        waiter.release()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_contending_claimants_hold_one_at_a_time(store):
    intervals: list[tuple[float, float]] = []

    def work() -> None:
        with Claim(store, "busy.claim", lease_s=5.0, renew_s=0.2, poll_s=0.05):
            start = time.monotonic()
            time.sleep(0.3)
            intervals.append((start, time.monotonic()))

    threads = [threading.Thread(target=work) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    intervals.sort()
    assert len(intervals) == 5
    assert all(a[1] <= b[0] for a, b in zip(intervals, intervals[1:])), intervals


def test_exclusive_picks_the_mechanism_from_the_storage(tmp_path, s3_endpoint, monkeypatch):
    import ray

    local = exclusive(str(tmp_path / "locks" / "pt-k"))
    with local:
        assert (tmp_path / "locks" / "pt-k.lock").is_file()  # the file lock, as before
    host = s3_endpoint.split("://", 1)[1]
    uri = f"s3://{BUCKET}/store/s/locks/pt-k?endpoint_override={host}&scheme=http"
    claim = exclusive(uri)
    assert isinstance(claim, Claim) and isinstance(claim.store, S3ClaimStore)
    assert claim.name == "store/s/locks/pt-k.claim"
    with claim:
        assert claim.store.read("store/s/locks/pt-k.claim") is not None
    assert claim.store.read("store/s/locks/pt-k.claim") is None
    # a store that ignores conditional writes, and no Ray: a per-node lock (and a warning)
    monkeypatch.setattr(S3ClaimStore, "conditional_writes_work", lambda self, prefix: False)
    monkeypatch.setattr(claims, "_S3_CHECKED", {})
    if ray.is_initialized():
        pytest.skip("Ray is running in this process")
    assert not isinstance(exclusive(uri), Claim)


def test_the_ray_actor_store_is_atomic_and_takes_leases(local_ray):
    store = ActorClaimStore()
    first = store.create("s3://b/x.claim", "one")
    assert first is not None and store.create("s3://b/x.claim", "two") is None
    assert store.replace("s3://b/x.claim", "stale", "0") is None
    again = ActorClaimStore()  # the same named actor
    assert again.read("s3://b/x.claim") == ("one", first)
    again.delete("s3://b/x.claim", first)
    holder = Claim(store, "s3://b/lease.claim", lease_s=1.0, renew_s=0.2, poll_s=0.1)
    holder.acquire()
    holder._stop.set()  # its renewals stop, as when its process dies
    holder._thread.join()
    waiter = Claim(again, "s3://b/lease.claim", lease_s=10.0, poll_s=0.1)
    waiter.acquire(timeout_s=10)
    assert waiter.took_over
    waiter.release()
    assert store.read("s3://b/lease.claim") is None


def test_refuse_live_gives_up_on_a_live_holder_and_takes_over_a_dead_ones(store):
    holder = Claim(store, "driver.claim", lease_s=1.0, renew_s=0.2, poll_s=0.1)
    holder.acquire()
    start = time.monotonic()
    with pytest.raises(claims.ClaimHeldError, match=rf"pid {os.getpid()} since 20"):
        Claim(store, "driver.claim", poll_s=0.1).acquire(refuse_live=True)
    assert time.monotonic() - start < 2.0  # one renewal seen, not a whole lease
    holder._stop.set()  # the holder stops renewing, as a dead one does
    holder._thread.join()
    waiter = Claim(store, "driver.claim", poll_s=0.1)
    waiter.acquire(refuse_live=True)
    assert waiter.took_over
    waiter.release()
