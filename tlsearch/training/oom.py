"""A CUDA out-of-memory in a training or evaluation batch, named as such (never a divergence)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


class TrainingOutOfMemoryError(RuntimeError):
    """The device ran out of memory in a training or evaluation batch.

    A resource problem, never a diverged model: :func:`fit` lets it propagate (no ``diverged``
    result), and a search retries the run once at a smaller batch
    (:mod:`tlsearch.search.run.gpu_memory`). ``batch_size`` is the loader's.
    """

    def __init__(self, message: str, batch_size: int | None = None) -> None:
        super().__init__(message, batch_size)  # both in args: survives pickling (Ray)
        self.batch_size = batch_size

    def __str__(self) -> str:
        return str(self.args[0])


@contextlib.contextmanager
def out_of_memory_named(loader: Any, device: torch.device, what: str) -> Iterator[None]:
    """Re-raise a CUDA out-of-memory as :class:`TrainingOutOfMemoryError` with the batch size."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        batch_size = getattr(loader, "batch_size", None)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingOutOfMemoryError(
            f"{device} out of memory in a {what} batch (batch_size {batch_size}): {first}",
            batch_size,
        ) from exc
