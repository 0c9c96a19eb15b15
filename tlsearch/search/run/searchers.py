"""The model-based searcher of an Optuna cell, and how many of its trials run at once.

Two things make Tune's ``OptunaSearch`` close to random search unless they are set:

- **Concurrency.** With no limit Tune asks TPE for every point it can start before any result
  returns, so most points are drawn from the prior. An Optuna experiment without a
  ``max_concurrent`` runs as many trials at once as the cluster has trial slots
  (:func:`optuna_concurrency`): TPE then sees results after each wave.
- **Pruned configurations.** A trial runs all the seeds of one configuration and reports the
  mean metric after each seed. When ASHA stops it after ``grace_period`` of the seeds, Tune
  hands its last (partial) mean to the searcher as if complete. :class:`FullMeansOptunaSearch`
  tells Optuna such a trial was *pruned*, so TPE learns only from means over every seed.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from tlsearch.search.plan.spec import SearchSpec

logger = logging.getLogger(__name__)


class FullMeansOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that records a configuration stopped before ``n_seeds`` seeds as
    pruned (Optuna's ``TrialState.PRUNED``) instead of complete."""

    def __init__(self, *args: Any, n_seeds: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.n_seeds = n_seeds

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if not error and result is not None and stopped_early(result, self.n_seeds):
            logger.debug("trial %s stopped after %s seeds: pruned", trial_id, result["seeds_done"])
            result = None  # OptunaSearch tells Optuna PRUNED for a result without the metric
        super().on_trial_complete(trial_id, result=result, error=error)


def stopped_early(result: dict, n_seeds: int) -> bool:
    """Whether ``result`` (a trial's last report) covers fewer than ``n_seeds`` seeds."""
    done = result.get("seeds_done")
    return done is not None and int(done) < n_seeds


def optuna_searcher(spec: SearchSpec) -> OptunaSearch:
    """TPE, seeded, learning from full means only."""
    return FullMeansOptunaSearch(seed=spec.search.seed, n_seeds=len(spec.seeds))


def optuna_concurrency(spec: SearchSpec) -> int:
    """Trials of an Optuna experiment at once: ``max_concurrent``, else the trial slots of the
    cluster (at its largest, autoscaler node types included; where those are unknown, the
    resources of the nodes there are), at least 1."""
    if spec.max_concurrent:
        return spec.max_concurrent
    from tlsearch.search.run.cluster_fit import cluster_capacity, trial_slots

    slots = trial_slots(spec.resources, cluster_capacity())
    if slots is None:
        slots = _slots_now(spec)
    slots = max(1, slots)
    logger.info(
        "Optuna experiments run %d trial(s) at a time (the cluster's trial slots); "
        "max_concurrent / --max-concurrent sets another number",
        slots,
    )
    return slots


def _slots_now(spec: SearchSpec) -> int:
    import ray

    have = ray.cluster_resources()
    counts = [int(have.get("CPU", 0.0) / spec.resources.cpu + 1e-9)]
    if spec.resources.gpu:
        counts.append(int(have.get("GPU", 0.0) / spec.resources.gpu + 1e-9))
    return min(counts)
