"""A trial's GPU share: its CUDA memory cap, and what a CUDA out-of-memory does to a run.

Ray counts a trial's ``resources: {gpu: 0.25}`` but does not enforce it: four such trials share
one GPU's memory. :func:`cap_gpu_memory` caps the trial process's CUDA allocator at its share
(``torch.cuda.set_per_process_memory_fraction``), so a run that needs more than its share runs
out of memory alone instead of starving its neighbours, and does so the same way every time.

A CUDA out-of-memory is never a diverged model. :func:`retry_out_of_memory` runs the job once
more at half its batch size (the row then records ``batch_size`` and, in ``error``, why it
changed); when that runs out of memory too, or the batch cannot be halved, it raises
:class:`~tlsearch.jobs.errors.GpuOutOfMemoryError`: a ``failed`` row naming the reason.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tlsearch.jobs.config import JobConfig
from tlsearch.jobs.errors import GpuOutOfMemoryError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Smallest batch a retry may use (BatchNorm in training needs two structures).
MIN_BATCH = 2
CUDA_OOM_TEXT = "CUDA out of memory"


def trial_gpu_share(fallback: float) -> float:
    """The GPUs Ray assigned to this process (a trial's ``resources.gpu``); ``fallback``
    outside a Ray worker."""
    try:
        import ray

        assigned = ray.get_runtime_context().get_assigned_resources()
    except Exception:  # not a Ray worker (a direct call, a test)
        return fallback
    return float(assigned.get("GPU", fallback))


def cap_gpu_memory(share: float) -> bool:
    """Cap this process's CUDA memory at ``share`` of each visible GPU when it holds a fraction
    of one (0 < share < 1) and CUDA is there; True when capped."""
    if not 0 < share < 1:
        return False
    import torch

    if not torch.cuda.is_available():
        return False
    for index in range(torch.cuda.device_count()):
        torch.cuda.set_per_process_memory_fraction(share, index)
    logger.info("CUDA memory capped at %.4g of the GPU (the trial's share)", share)
    return True


@dataclass(frozen=True)
class OutOfMemory:
    """What a CUDA out-of-memory said (text only: no frames, so no tensors, are kept)."""

    text: str
    batch_size: int | None


def find_out_of_memory(exc: BaseException) -> OutOfMemory | None:
    """The CUDA out-of-memory in ``exc`` or its causes (Ray wraps workers' errors), or None.

    Ray's own ``OutOfMemoryError`` (its memory monitor killed a worker: host RAM) is not one.
    """
    found: list[BaseException] = []
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        if _is_cuda_oom(err):
            found.append(err)
        failures = getattr(err, "worker_failures", None) or {}
        todo += [failures[rank] for rank in sorted(failures)]
        for attr in ("cause", "controller_failure", "__cause__", "__context__"):
            inner = getattr(err, attr, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
    if not found:
        return None
    sized = [e for e in found if isinstance(getattr(e, "batch_size", None), int)]
    best = (sized or found)[0]
    text = " ".join(str(best).split()) or type(best).__name__
    return OutOfMemory(text[:600], getattr(best, "batch_size", None) if sized else None)


def _is_cuda_oom(err: BaseException) -> bool:
    """By class name through the MRO (Ray's ``RayTaskError(X)`` derives from X; no torch
    import in a process that never trained), or by torch's message."""
    for kind in type(err).__mro__:
        if kind.__name__ == "TrainingOutOfMemoryError":
            return True
        if kind.__name__ == "OutOfMemoryError" and kind.__module__.startswith("torch"):
            return True
    return CUDA_OOM_TEXT in str(err)


def run_batch_size(job: JobConfig, oom: OutOfMemory) -> int | None:
    """The batch size the job ran out of memory at: the loader's, the recipe's, or the paper's
    rule on the job's set size; None when none of them is known."""
    if oom.batch_size is not None:
        return oom.batch_size
    if job.train.get("batch_size") is not None:
        return int(job.train["batch_size"])
    size = job.data.size if job.data is not None else None
    if size is None:
        return None
    from tlsearch.training.config import TrainConfig

    return TrainConfig.model_validate(job.train).resolve_batch_size(size)


def free_gpu_memory() -> None:
    """Release what the failed attempt left in CUDA's cache (before the retry allocates)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def retry_out_of_memory(
    job: JobConfig, attempt: Callable[[JobConfig], T], what: str
) -> tuple[T, JobConfig, str | None]:
    """``attempt(job)``; after a CUDA out-of-memory once more at half the batch size.

    Returns:
        the attempt's result, the job that produced it, and a note for the row (None when the
        first attempt ran).

    Raises:
        GpuOutOfMemoryError: out of memory again, or a batch that cannot be halved.
    """
    result, oom = _attempt(job, attempt)
    if oom is None:
        return result, job, None
    share = trial_gpu_share(0.0)
    where = f" (GPU share {share:g})" if 0 < share < 1 else ""
    current = run_batch_size(job, oom)
    if current is None or current // 2 < MIN_BATCH:
        hint = "set a smaller train.batch_size" if current is None else "nothing to halve"
        raise GpuOutOfMemoryError(
            f"{what}: CUDA out of memory at batch_size {current or 'unknown'}{where}; not "
            f"retried ({hint}); give the trial a larger GPU share (resources.gpu): {oom.text}"
        )
    smaller = current // 2
    logger.warning("%s: CUDA out of memory at batch_size %d%s; retrying once at batch_size %d",
                   what, current, where, smaller)  # fmt: skip
    free_gpu_memory()
    retry_job = job.model_copy(update={"train": {**job.train, "batch_size": smaller}})
    result, again = _attempt(retry_job, attempt)
    if again is not None:
        free_gpu_memory()
        raise GpuOutOfMemoryError(
            f"{what}: CUDA out of memory at batch_size {current}{where} and again at "
            f"{smaller}; give the trial a larger GPU share (resources.gpu) or set a smaller "
            f"train.batch_size: {again.text}"
        )
    note = (f"recovered from a CUDA out of memory at batch_size {current}{where}: trained at "
            f"batch_size {smaller} ({oom.text})")  # fmt: skip
    return result, retry_job, note[:2000]


def _attempt(job: JobConfig, attempt: Callable[[JobConfig], T]) -> tuple[Any, OutOfMemory | None]:
    """``(attempt(job), None)``, or ``(None, what it said)`` after a CUDA out-of-memory (other
    errors propagate). The exception is dropped here, so its frames (and the CUDA tensors they
    hold) can be freed before a retry."""
    try:
        return attempt(job), None
    except Exception as exc:
        oom = find_out_of_memory(exc)
        if oom is None:
            raise
        return None, oom
