"""A search in one call, as ``tlsearch search`` and ``tlsearch.search()`` run it.

The spec is prepared by :func:`tlsearch.search.plan.prepare.prepare_spec`; :func:`run_owning_ray`
runs it with :func:`~tlsearch.search.run.driver.run_search` and stops the Ray it started: on an
error before the error is raised (so that the error is the last thing said), otherwise at once
or, for the command line, in the background while the status table is printed.
"""

from __future__ import annotations

import threading
from typing import Any

from tlsearch.search.plan.spec import SearchSpec


def run_owning_ray(
    spec: SearchSpec, *, background_stop: bool = False, **run_search_kwargs: Any
) -> tuple[Any, threading.Thread | None]:
    """:func:`~tlsearch.search.run.driver.run_search` ``(spec, **run_search_kwargs)``, then stop
    Ray.

    Only a Ray this call started is stopped (one this process had already is left running).

    Args:
        background_stop: stop the Ray processes in a thread that the caller joins (the command
            prints meanwhile; :func:`tlsearch.search.run.startup.stop_ray_in_background`); else
            stop them before returning.

    Returns:
        (the search's :class:`~tlsearch.search.watch.status.SearchStatus`, the stopping thread or
        None).

    Raises:
        whatever ``run_search`` raises, after Ray is stopped.
    """
    import ray

    from tlsearch.search.run.driver import run_search
    from tlsearch.search.run.startup import stop_ray_in_background

    own_ray = not ray.is_initialized()  # run_search connects; this call then owns Ray
    try:
        status = run_search(spec, **run_search_kwargs)
    except BaseException:
        if own_ray and ray.is_initialized():
            ray.shutdown()
        raise
    if not (own_ray and ray.is_initialized()):
        return status, None
    if background_stop:
        return status, stop_ray_in_background()
    ray.shutdown()
    return status, None
