"""Keep freed memory in the process while a CPU model trains (glibc's ``mallopt``).

Why: glibc's ``malloc`` serves every block above its mmap threshold (128 kB to 32 MB, adaptive)
with a fresh ``mmap`` and gives it back with ``munmap`` when freed. A training step of the
paper's ALIGNN allocates and frees dozens of such tensors (edge-sized: 6 MB to 100 MB), so every
step faults in, and the kernel zeroes, hundreds of MB of new pages, and the native loops and
matmuls that first touch a fresh tensor wait for it. Inside :func:`retained_heap` blocks come
from the heap instead (``M_MMAP_MAX = 0``) and freed ones stay there for the next step (no
trimming): after the first steps the same pages are reused (torch's aligned allocations rotate
over a few heap blocks of each size). Measured on a 2-core Xeon, paper model, batches of 16
from ``bg_trial1_800``: steps 1.56-1.63 s -> 1.41-1.42 s, minor page faults 3.5x fewer, system
time 2.9-3.6 s -> 1.1 s over 7 steps; ``dc_trial1_800``: steps ~5% faster.

The cost is resident memory: the process keeps its peak heap while inside (BG above: peak RSS
1.84-1.85 GB -> 1.91-1.92 GB). On leaving the outermost context glibc's limits are set to
what its own adaptation reaches (blocks above 32 MB mapped again) and ``malloc_trim`` returns
the free heap to the system (BG above: 0.35 GB resident after,
1.45-1.5 GB without the context), so a Ray worker that runs trials one after another does not
carry one trial's peak into the next. Process-wide (``mallopt`` has no per-thread form): nested
and concurrent uses are counted and only the last exit restores. No effect off glibc (macOS,
musl), on CUDA devices, or with ``TLSEARCH_RETAIN_HEAP=0``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import threading
from collections.abc import Iterator

import torch

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
#: What glibc's adaptive limits reach in a process that has freed large blocks (its largest mmap
#: threshold on 64-bit, trimming at twice that). Setting any limit with mallopt turns the
#: adaptation off for good, so leaving the context sets these rather than the start values:
#: with a 128 kB threshold every later 4 MB tensor was mapped and faulted in afresh (1,025
#: minor faults each, measured), with these it reuses the heap as an untouched process does
#: (163-164 each).
_AFTER_MMAP_THRESHOLD, _AFTER_MMAP_MAX = 32 << 20, 65536
_AFTER_TRIM_THRESHOLD = 2 * _AFTER_MMAP_THRESHOLD
_NO_TRIM = -1  # mallopt(3): a trim threshold of -1 disables trimming

_lock = threading.Lock()
_depth = 0


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc with ``mallopt`` and ``malloc_trim``, else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


def enabled(device: torch.device) -> bool:
    """Whether :func:`retained_heap` acts for a model on ``device``."""
    return device.type == "cpu" and os.environ.get("TLSEARCH_RETAIN_HEAP", "1") != "0"


def _set(libc: ctypes.CDLL, trim_threshold: int, mmap_max: int, mmap_threshold: int = 0) -> bool:
    ok = libc.mallopt(_M_MMAP_MAX, mmap_max) == 1
    if mmap_threshold:
        ok &= libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    return ok & (libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1)


@contextlib.contextmanager
def retained_heap(device: torch.device | str = "cpu") -> Iterator[bool]:
    """Inside: large blocks come from the heap and freed memory stays in the process (see the
    module docstring). Yields whether the setting is in force."""
    global _depth
    device = torch.device(device)
    libc = _glibc() if enabled(device) else None
    if libc is None:
        yield False
        return
    with _lock:
        if _depth == 0 and not _set(libc, _NO_TRIM, 0):
            logger.debug("mallopt refused the retained-heap settings")
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(libc, _AFTER_TRIM_THRESHOLD, _AFTER_MMAP_MAX, _AFTER_MMAP_THRESHOLD)
                libc.malloc_trim(0)
