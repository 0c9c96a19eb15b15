"""Chunk loops split over Python threads, each running torch ops on one intra-op thread.

Why: on CPU every torch op is an OpenMP parallel region ending in a barrier, and with workers
that sleep between regions (``OMP_WAIT_POLICY=PASSIVE``, the norm on shared machines) each
region also pays a wake-up. A line graph's edge kernel is a few hundred such ops per step on
(8192, 256) chunks. Giving each thread whole chunks instead (torch releases the GIL inside
ops) removes the per-op synchronisation, which on loaded cores costs more than the ops of a
chunk loop (measurements: bench/README.md).

Determinism: chunks are dealt statically (worker ``k`` gets chunks ``k, k + W, k + 2W, ...``),
each worker accumulates its own partial sums over its chunks in order, and the caller reduces
the partials in worker order, so results do not depend on thread timing (they may differ in
the last bits between worker counts, as sums over a different number of threads do).

Like :class:`~.bn_silu.OneThread`, a split sets torch's process-wide thread count
(to one, restored after): a host that runs models from several threads at once should turn it
off (``tlsearch.model.kernels.bn_silu.PARALLEL = False``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0
_pool_lock = threading.Lock()


def _executor(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool with at least ``threads`` threads (created on first use, and anew
    in a forked child, which inherits the pool object but not its threads)."""
    global _pool, _pool_size, _pool_pid
    with _pool_lock:
        forked = _pool_pid != os.getpid()
        if _pool is None or _pool_size < threads or forked:
            if _pool is not None and not forked:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="tlsearch-chunks")
            _pool_size, _pool_pid = threads, os.getpid()
        return _pool


def _single_threaded(fn: Callable[[list[T]], R], items: list[T]) -> R:
    """``fn(items)`` with one intra-op thread and without autograd (grad mode is per thread)."""
    torch.set_num_threads(1)
    with torch.no_grad():
        return fn(items)


def split_map(fn: Callable[[list[T]], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(items[k::workers]) for k in range(workers)]`` (empty shares skipped).

    With ``workers > 1`` the shares run at once, on this thread and ``workers - 1`` pool
    threads, each with torch set to one thread; the caller's thread count is restored after
    every share has finished (also when one raises, which is then re-raised). ``fn`` must only
    write to memory its share owns.
    """
    shares = [list(items[k::workers]) for k in range(max(1, workers))]
    shares = [s for s in shares if s]
    if len(shares) <= 1:
        return [fn(s) for s in shares]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    futures: list[Future] = []
    try:
        pool = _executor(len(shares) - 1)
        futures = [pool.submit(_single_threaded, fn, s) for s in shares[1:]]
        first = _single_threaded(fn, shares[0])
        return [first] + [f.result() for f in futures]
    finally:
        wait(futures)
        torch.set_num_threads(threads)


def reduce_in_order(parts: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """``parts[0] + parts[1] + ...`` (in place into the first), skipping None; None if all are."""
    total = None
    for part in parts:
        if part is not None:
            total = part if total is None else total.add_(part)
    return total
