"""How many multi-worker (DDP) PT trials may run at once without starving their own workers.

A DDP PT trial is a small Tune trial (``pretrain.resources``) that starts a Ray Train
``TorchTrainer`` whose workers ask for resources of their own, which Tune does not reserve.
Left alone, Tune fills the cluster with PT trials (8 trials of 0.25 CPU on 2 CPUs) and no
trial's 4 workers can ever be placed: every worker group times out and retries forever
(seen in the ``pt_size`` rehearsal). So the PT experiment runs at most as many DDP trials as
the cluster can hold *with* their workers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from tlsearch.search.plan.spec import SearchSpec

logger = logging.getLogger(__name__)


def ddp_job_needs(spec: SearchSpec) -> dict[str, float]:
    """CPUs and GPUs one DDP PT job holds: its trial plus all its workers."""
    pt = spec.pretrain
    trial = pt.resources or spec.resources
    return {
        "CPU": trial.cpu + pt.num_workers * pt.cpus_per_worker,
        "GPU": trial.gpu + pt.num_workers * pt.gpus_per_worker,
    }


def ddp_trial_limit(spec: SearchSpec, cluster: Mapping[str, float]) -> int | None:
    """At most this many DDP PT trials at once on ``cluster`` (None: not a DDP search).

    At least 1: where one job does not fit the cluster as it is now (an autoscaling cluster
    may still grow), a warning names the missing resource and the job waits for it.
    """
    if spec.pretrain.num_workers <= 1:
        return None
    limits = []
    for name, need in ddp_job_needs(spec).items():
        if need <= 0:
            continue
        have = float(cluster.get(name, 0.0))
        fits = math.floor(have / need + 1e-9)
        if fits < 1:
            logger.warning(
                "a DDP PT job needs %.2f %s (%d workers + its trial); the cluster has %.2f now: "
                "it waits until the cluster grows",
                need, name, spec.pretrain.num_workers, have,
            )  # fmt: skip
        limits.append(max(fits, 1))
    limit = min(limits) if limits else None
    if limit is not None and spec.max_concurrent:
        limit = min(limit, spec.max_concurrent)
    return limit
