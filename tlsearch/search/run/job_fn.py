"""The job function a search runs: :func:`run_search_job`, or the one a spec's testing hook
names (:func:`resolve_job_fn`).

A PT job on several DDP workers (``num_workers > 1``) runs on Ray Train
(:func:`tlsearch.search.run.ddp.run_ddp_pretrain`); every other job runs in its trial's process
through :func:`tlsearch.jobs.run.run_job`. Both have the signature ``(job, workdir) -> metrics``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tlsearch.jobs.config import JobConfig
from tlsearch.search.run.ddp import run_ddp_pretrain


def run_search_job(job: JobConfig, workdir: Path | str) -> dict[str, Any]:
    """Run ``job`` with its outputs in ``workdir``: on DDP workers or in this process."""
    if job.kind == "pretrain" and job.num_workers > 1:
        return run_ddp_pretrain(job, Path(workdir))  # Ray Train keeps its checkpoints
    from tlsearch.jobs.run import run_job  # imports torch: trials only, never the driver

    return run_job(job, workdir)


def resolve_job_fn(ref: str | None) -> Any:
    """``"module:function"`` -> the function; ``None`` -> :func:`run_search_job`."""
    if not ref:
        return run_search_job
    module, _, name = ref.partition(":")
    if not name:
        raise ValueError(f"job_fn {ref!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module), name)
