"""Job functions that lose their process once in the middle of training (a preempted node).

Importable by Ray's worker processes (``tests`` is on their ``PYTHONPATH``). Each dies with
``os._exit`` right after its first checkpoint of epoch ``KILL_AFTER`` was saved, once per
job: a marker file beside the checkpoint says it already died.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tlsearch.jobs.checkpoints import StorageCheckpoints
from tlsearch.jobs.run import run_job
from tlsearch.search.run import ddp
from tlsearch.search.run.ddp import RayTrainCheckpoints

KILL_AFTER = 2
#: Seconds rank 1 lives on after its epoch-KILL_AFTER checkpoint (see rank1_dies_once).
DDP_GRACE_S = 5.0


def _die_once(marker: Path) -> None:
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)  # no cleanup, no exception: the process is gone


def pt_dies_once(job: Any, workdir: Path) -> dict[str, Any]:
    """``run_job``, whose PT job's trial process dies after its epoch-2 checkpoint once."""
    if job.kind == "pretrain":
        real = StorageCheckpoints.save

        def save(self: StorageCheckpoints, state: dict[str, Any]) -> None:
            real(self, state)
            if state["epoch"] == KILL_AFTER:
                _die_once(Path(f"{self.folder}.killed"))

        StorageCheckpoints.save = save  # type: ignore[method-assign]
    return run_job(job, workdir)


def rank1_dies_once(config: dict[str, Any]) -> dict[str, Any] | None:
    """The DDP worker function, whose rank 1 dies after the epoch-2 checkpoint once."""
    real = RayTrainCheckpoints.save
    marker = Path(config["job"]["cache_dir"]) / "rank1.killed"

    def save(self: RayTrainCheckpoints, state: dict[str, Any]) -> None:
        real(self, state)
        if state["epoch"] == KILL_AFTER and self.rank == 1 and not marker.exists():
            # Ray Train's controller registers a reported checkpoint when it next polls the
            # workers: a rank that dies milliseconds after its reports (tiny epochs) can take
            # the epoch-1 checkpoint with it too, and the run then rightly restarts from 0.
            # A preempted node dies some time after its last checkpoint: give the poll time.
            time.sleep(DDP_GRACE_S)
            _die_once(marker)

    RayTrainCheckpoints.save = save  # type: ignore[method-assign]
    return ddp.ddp_train_loop(config)
