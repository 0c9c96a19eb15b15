"""The one preparation step: a spec as the command's switches and this machine make it, before
it is compiled into a plan (no Ray).

:func:`prepare_spec` applies, in this order: top-level overrides (``--storage``, ``--name``...),
``--var NAME=VALUE`` (:func:`with_vars`), ``--smoke`` (:func:`smoke_spec`), ``--rehearse``
(:func:`tlsearch.search.plan.rehearse.rehearsal_spec`), ``--offline``
(:func:`tlsearch.search.plan.offline.offline_spec`), ``--seeds N`` (:func:`first_seeds`), and
makes the storage and graph cache paths absolute (:func:`resolve_storage`). The result is what
``spec.yaml`` stores and ``--resume`` compares. Compilation then resolves the datasets for the
trials (:func:`tlsearch.search.plan.points.resolve_datasets`) and yields the plan
(:func:`tlsearch.search.plan.compile.compile_plan`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlsearch.jobs.config import absolute_spec
from tlsearch.search.plan.offline import offline_folder, offline_spec
from tlsearch.search.plan.points import sources_for
from tlsearch.search.plan.rehearse import rehearsal_spec
from tlsearch.search.plan.spec import SearchSpec, load_spec
from tlsearch.storage.uri import is_remote


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
        smoke: the tiny version (:func:`smoke_spec`).
        rehearse, offline, seeds: as ``tlsearch search --rehearse/--offline/--seeds N``
            (:func:`apply_modes`).
        base_dir: folder of relative paths (default: the current directory).
        variables: values replacing some of the spec's ``vars`` (``--var NAME=VALUE``), e.g.
            ``{"paper": "/data/paper"}`` where the data is mounted elsewhere; a name the spec
            has no var of is refused.

    Raises:
        ValueError / FileNotFoundError: an invalid or missing spec (fields named).
    """
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
    moded = apply_modes(loaded, base_dir=base, rehearse=rehearse, offline=offline, seeds=seeds)
    return resolve_storage(moded, base)


def with_vars(spec: SearchSpec, variables: Mapping[str, str]) -> SearchSpec:
    """``spec`` with some of its ``vars`` replaced (names it has no var of are refused)."""
    unknown = sorted(set(variables) - set(spec.vars))
    if unknown:
        have = ", ".join(sorted(spec.vars)) or "none"
        raise ValueError(f"--var {', '.join(unknown)}: the spec has no such var (its vars: {have})")
    return SearchSpec.model_validate({**spec.model_dump(), "vars": {**spec.vars, **variables}})


def first_seeds(spec: SearchSpec, n: int) -> SearchSpec:
    """``spec`` with only its first ``n`` seeds (``--seeds N``)."""
    if n < 1:
        raise ValueError(f"--seeds must be at least 1, got {n}")
    return spec.model_copy(update={"seeds": spec.seeds[:n]})


def apply_modes(
    spec: SearchSpec,
    *,
    base_dir: str,
    rehearse: bool = False,
    offline: bool = False,
    seeds: int | None = None,
) -> SearchSpec:
    """``spec`` as ``--rehearse`` / ``--offline`` / ``--seeds N`` ask (in that order)."""
    if rehearse:
        spec = rehearsal_spec(spec)
    if offline:
        resolved = resolve_storage(spec, base_dir)
        spec = offline_spec(spec, base_dir, offline_folder(resolved), rehearsal=rehearse)
    if seeds is not None:
        spec = first_seeds(spec, seeds)
    return spec


def smoke_spec(spec: SearchSpec) -> SearchSpec:
    """A tiny version of ``spec`` for a quick end-to-end check, named ``<name>-smoke``.

    The first target, up to two of its PT sources, the first value of every other axis, one
    seed, 2 epochs and a 1+1-layer, 16-wide model.
    """
    data = spec.model_dump()
    first = {k: data[k][:1] for k in ("ft_sizes", "pt_sizes", "strategies", "sampling", "seeds")}
    target = spec.targets[0]
    sources = {s.name for s in sources_for(spec, target)[:2]}
    data.update(first, name=f"{spec.name}-smoke", targets=[target])
    data["pt_sources"] = [s for s in data["pt_sources"] if s["name"] in sources]
    if spec.pairs != "all":
        data["pairs"] = [[s, t] for s, t in spec.pairs if s in sources and t == target]
    if not data["pt_sources"]:
        data["scratch"] = True
    if isinstance(spec.lr, list):
        data["lr"] = spec.lr[:1]
    data["train"] = {**spec.train, "epochs": 2, "early_stopping_patience": None}
    data["pretrain"]["train"] = {**spec.pretrain.train, "epochs": 2}
    tiny = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 16}
    data["model"] = {**spec.model, **tiny}
    data["search"]["num_samples"] = min(2, spec.search.num_samples)
    return SearchSpec.model_validate(data)


def resolve_storage(spec: SearchSpec, base_dir: str) -> SearchSpec:
    """``spec`` with its storage and graph cache as absolute paths (URIs unchanged)."""
    update: dict[str, Any] = {}
    if not is_remote(spec.storage):
        update["storage"] = absolute_spec(spec.storage, base_dir)
    if spec.graph_cache not in (None, "auto") and not is_remote(str(spec.graph_cache)):
        update["graph_cache"] = absolute_spec(str(spec.graph_cache), base_dir)
    return spec.model_copy(update=update)
