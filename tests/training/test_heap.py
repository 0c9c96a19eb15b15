"""The retained heap of CPU training: freed large blocks are reused without new page faults
inside the context, glibc's behaviour comes back after it, and fit trains inside it."""

from __future__ import annotations

import contextlib
import resource

import numpy as np
import pytest
import torch

from tlsearch.training import heap, loop
from tlsearch.training.config import TrainConfig
from tlsearch.training.loop import GraphLoader, fit

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="needs glibc's mallopt")

#: 64 MB: above glibc's largest adaptive mmap threshold (32 MB), like a big batch's edge tensors
BLOCK = 16 << 20


def _faults_of_reuse() -> int:
    """Minor page faults of allocating and filling a large tensor after the same has been done
    and freed a few times (glibc's aligned allocations rotate over a few heap blocks)."""
    for _ in range(4):
        torch.ones(BLOCK)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(BLOCK)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


PAGES = BLOCK * 4 // 4096


@pytest.fixture(autouse=True)
def _heap_setting_on(monkeypatch):
    """The tests below need the setting on, whatever the environment of the suite says."""
    monkeypatch.delenv("TLSEARCH_RETAIN_HEAP", raising=False)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def test_freed_blocks_are_reused_inside_and_given_back_at_exit():
    """Inside, a freed 64 MB block (above any mmap threshold of glibc, so mapped and faulted in
    afresh each time without the context) is reused without page faults; at the exit the free
    heap goes back to the system."""
    with heap.retained_heap("cpu") as active:
        assert active
        assert _faults_of_reuse() < PAGES // 10
        inside = _resident_bytes()
    assert inside - _resident_bytes() > BLOCK * 4 // 2


def test_after_the_context_medium_blocks_still_reuse_the_heap():
    """Setting limits turns glibc's adaptive mmap threshold off for good; leaving must not
    leave it at its 128 kB start value (every 4 MB tensor would be mapped afresh)."""
    with heap.retained_heap("cpu"):
        torch.ones(BLOCK)
    medium = 1 << 20  # 4 MB
    torch.ones(medium)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.ones(medium)
    per_block = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
    assert per_block < medium * 4 // 4096 // 2  # a fresh mapping faults in all 1024 pages


def test_nested_contexts_restore_only_at_the_outermost_exit():
    with heap.retained_heap("cpu"):
        with heap.retained_heap("cpu"):
            pass
        assert _faults_of_reuse() < PAGES // 10
    assert heap._depth == 0


def test_off_for_cuda_devices_and_when_disabled(monkeypatch):
    with heap.retained_heap("cuda") as active:
        assert not active
    monkeypatch.setenv("TLSEARCH_RETAIN_HEAP", "0")
    with heap.retained_heap("cpu") as active:
        assert not active


def test_fit_trains_inside_the_retained_heap(monkeypatch, store_factory, model_factory):
    devices, inside = [], []
    real = heap.retained_heap

    @contextlib.contextmanager
    def recording(device):
        devices.append(torch.device(device))
        with real(device) as active:
            inside.append(active)
            yield active

    monkeypatch.setattr(loop, "retained_heap", recording)
    store = store_factory(40)
    idx = np.arange(len(store))
    train = GraphLoader(store, idx[:32], store.targets, 8, shuffle=True)
    val = GraphLoader(store, idx[32:], store.targets, 8)
    fit(model_factory(), train, val, TrainConfig(epochs=1, device="cpu"), progress=False)
    assert devices == [torch.device("cpu")] and inside == [True]
    assert heap._depth == 0
