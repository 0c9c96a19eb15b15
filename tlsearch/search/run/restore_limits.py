"""Tune's search algorithms for a restored experiment, with the ``max_concurrent`` of now.

Tune restores a search algorithm's saved state, and with it the concurrency limit of the run that
saved it; these keep the limit they are built with (:func:`cap_restored`). Imported only when an
experiment is restored (it imports Ray).
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.concurrency_limiter import ConcurrencyLimiter as _RayConcurrencyLimiter


class KeepLimitVariantGenerator(BasicVariantGenerator):
    """Tune's grid generator keeping the ``max_concurrent`` it was built with when its saved
    state (which holds the limit of the run that saved it) is restored."""

    def set_state(self, state: dict[str, Any]) -> None:
        limit = self.max_concurrent
        super().set_state(state)
        self.max_concurrent = limit


class ConcurrencyLimiter(_RayConcurrencyLimiter):
    """Ray's ``ConcurrencyLimiter`` keeping its limit when its saved state is restored (the
    same class name: Tune finds the saved state by it, with the trials still running)."""

    def set_state(self, state: dict[str, Any]) -> None:
        limit = self.max_concurrent
        super().set_state(state)
        self.max_concurrent = limit


def cap_restored(tuner: Any, max_concurrent: int | None) -> None:
    """Give a restored ``Tuner``'s search algorithm the limit ``max_concurrent`` (None: none)."""
    config = tuner._local_tuner._tune_config
    searcher = config.search_alg
    if searcher is None or isinstance(searcher, BasicVariantGenerator):
        config.search_alg = KeepLimitVariantGenerator(max_concurrent=max_concurrent or 0)
    else:
        inner = searcher
        while isinstance(inner, _RayConcurrencyLimiter):
            inner = inner.searcher
        config.search_alg = ConcurrencyLimiter(inner, max_concurrent) if max_concurrent else inner
    config.max_concurrent_trials = None  # the search algorithm above holds it
