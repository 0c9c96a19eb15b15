"""A search in one call, as ``tlsearch search`` and ``tlsearch.search()`` run it.

:func:`prepare_spec` is the spec as the command's switches change it (overrides, ``--smoke``,
``--rehearse``, ``--offline``, ``--seeds``); :func:`run_owning_ray` runs it with
:func:`~tlsearch.search.driver.run_search` and stops the Ray it started: on an error before the
error is raised (so that the error is the last thing said), otherwise at once or, for the
command line, in the background while the status table is printed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlsearch.search.spec import SearchSpec


def prepare_spec(
    spec: SearchSpec | str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    smoke: bool = False,
    rehearse: bool = False,
    offline: bool = False,
    seeds: int | None = None,
    base_dir: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> SearchSpec:
    """The spec to run: a YAML path, a mapping or a :class:`SearchSpec`, then the modes.

    Args:
        spec: ``search_spaces/*.yaml``, the same as a mapping, or a loaded spec.
        overrides: top-level keys that replace the spec's (``None`` values are ignored).
        smoke: the tiny version (:func:`tlsearch.search.compile.smoke_spec`).
        rehearse, offline, seeds: as ``tlsearch search --rehearse/--offline/--seeds N``
            (:func:`tlsearch.search.rehearse.apply_modes`).
        base_dir: folder of relative paths (default: the current directory).
        variables: values replacing some of the spec's ``vars`` (``--var NAME=VALUE``), e.g.
            ``{"paper": "/data/paper"}`` where the data is mounted elsewhere; a name the spec
            has no var of is refused.

    Raises:
        ValueError / FileNotFoundError: an invalid or missing spec (fields named).
    """
    from tlsearch.search.compile import smoke_spec
    from tlsearch.search.rehearse import apply_modes
    from tlsearch.search.spec import load_spec

    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if isinstance(spec, SearchSpec):
        loaded = SearchSpec.model_validate({**spec.model_dump(), **given}) if given else spec
    elif isinstance(spec, Mapping):
        loaded = SearchSpec.model_validate({**spec, **given})
    else:
        loaded = load_spec(spec, given)
    if variables:
        loaded = with_vars(loaded, variables)
    if smoke:
        loaded = smoke_spec(loaded)
    base = base_dir or os.getcwd()
    return apply_modes(loaded, base_dir=base, rehearse=rehearse, offline=offline, seeds=seeds)


def with_vars(spec: SearchSpec, variables: Mapping[str, str]) -> SearchSpec:
    """``spec`` with some of its ``vars`` replaced (names it has no var of are refused)."""
    unknown = sorted(set(variables) - set(spec.vars))
    if unknown:
        have = ", ".join(sorted(spec.vars)) or "none"
        raise ValueError(f"--var {', '.join(unknown)}: the spec has no such var (its vars: {have})")
    return SearchSpec.model_validate({**spec.model_dump(), "vars": {**spec.vars, **variables}})


def run_owning_ray(
    spec: SearchSpec, *, background_stop: bool = False, **run_search_kwargs: Any
) -> tuple[Any, threading.Thread | None]:
    """:func:`~tlsearch.search.driver.run_search` ``(spec, **run_search_kwargs)``, then stop Ray.

    Only a Ray this call started is stopped (one this process had already is left running).

    Args:
        background_stop: stop the Ray processes in a thread that the caller joins (the command
            prints meanwhile; :func:`tlsearch.search.startup.stop_ray_in_background`); else
            stop them before returning.

    Returns:
        (the search's :class:`~tlsearch.search.status.SearchStatus`, the stopping thread or
        None).

    Raises:
        whatever ``run_search`` raises, after Ray is stopped.
    """
    import ray

    from tlsearch.search.driver import run_search
    from tlsearch.search.startup import stop_ray_in_background

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
