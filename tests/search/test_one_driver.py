"""One driver per search (:mod:`tlsearch.storage.search_lock`): a second driver of the same
search is refused, naming the first; a dead driver's lock is free."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.search.conftest import REPO, fake_spec
from tlsearch.search.run import driver
from tlsearch.storage.search_lock import SearchBusyError, one_driver


def test_a_second_driver_is_refused_naming_the_first(tmp_path, monkeypatch):
    monkeypatch.setattr(driver, "connect", lambda address: pytest.fail("Ray was started"))
    spec = fake_spec(tmp_path)
    with one_driver(str(tmp_path / "store"), "fake"), pytest.raises(SearchBusyError) as info:
        driver.run_search(spec, resume=True, base_dir=str(tmp_path), verbose=0)
    text = str(info.value)
    assert "'fake'" in text and f"{socket.gethostname()}/pid {os.getpid()} since 20" in text
    assert not (tmp_path / "store" / "fake").exists()  # refused before anything is written
    with one_driver(str(tmp_path / "store"), "other"):  # another search of the storage: free
        pass


HOLDER = textwrap.dedent(
    """
    import sys, time
    from tlsearch.storage.search_lock import one_driver
    with one_driver(sys.argv[1], "fake"):
        print("held", flush=True)
        time.sleep(600)
    """
)


def test_a_dead_drivers_lock_is_taken_over(tmp_path):
    storage = str(tmp_path / "store")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, storage], cwd=REPO, env=env, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        busy = pytest.raises(SearchBusyError, match=rf"pid {proc.pid} since")
        with busy, one_driver(storage, "fake"):
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with one_driver(storage, "fake"):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
