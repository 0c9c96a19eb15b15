"""``best_pair(search=SPEC)`` (``tlsearch best-pair --search``): run the search, then what the
ranking still lacks, then rank (the API layer sits above both the search and the analysis).

1. The spec itself runs (or resumes: recorded seed-runs are never rerun), restricted to the
   target when it has several (then named ``<name>-<target>``).
2. The ranking is computed; its leading candidates (``top`` best by the selection metric, with
   no failed or diverged seed) that miss seeds, and any of them without a complete scratch
   baseline, become small grid searches named ``<name>-fill-<hash>`` in the same storage, each
   asking exactly for the missing configuration and seeds. Their rows carry the same run ids
   (configuration hash + seed) as the spec's own would, so the ranking merges them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import pandas as pd

from tlsearch.analysis.best_pair import BestPair, rank
from tlsearch.analysis.frame import Results, load_runs
from tlsearch.analysis.stats import lower_is_better
from tlsearch.jobs.identity import stable_hash
from tlsearch.search.plan.prepare import resolve_storage
from tlsearch.search.plan.spec import SearchSpec, load_spec
from tlsearch.search.run.driver import run_search

logger = logging.getLogger(__name__)


def _plain_size(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)  # type: ignore[arg-type]


def fill_specs(spec: Any, best: BestPair, top: int = 3) -> list[Any]:
    """Grid specs for the candidates' missing seeds and scratch baselines (may be empty)."""
    clean = best.ranking[(best.ranking["n_failed"] == 0) & (best.ranking["n_diverged"] == 0)]
    ascending = lower_is_better(best.select_metric)
    candidates = clean.sort_values("select_mean", ascending=ascending, na_position="last")
    wanted: list[dict[str, Any]] = []
    for _, line in candidates.head(top).iterrows():
        missing = sorted(set(spec.seeds) - set(line["seeds"]))
        base = {
            "targets": [best.target],
            "ft_sizes": [_plain_size(line["ft_size"])],
            "sampling": [line["sampling"]],
            "lr": float(line["lr"]),
        }
        if missing:
            wanted.append(
                {
                    **base,
                    "seeds": missing,
                    "scratch": False,
                    "strategies": [line["strategy"]],
                    "pt_source": line["pt_source"],
                    "pt_size": _plain_size(line["pt_size"]),
                }
            )
        scratch_done = line["vs_scratch_n_pairs"] if line["vs_scratch_scratch_mean"] else 0
        if not scratch_done or scratch_done < len(spec.seeds):
            wanted.append({**base, "seeds": list(spec.seeds), "scratch": True, "pt_source": None})
    specs, seen = [], set()
    for item in wanted:
        key = stable_hash(item)[:10]
        if key in seen:
            continue
        seen.add(key)
        data = spec.model_dump()
        source = item.pop("pt_source")
        pt_size = item.pop("pt_size", None)
        data.update(item, name=f"{spec.name}-fill-{key}", pairs="all")
        data["pt_sources"] = [s for s in data["pt_sources"] if s["name"] == source]
        if source is not None and pt_size is not None:
            data["pt_sizes"] = [pt_size]
        data["search"] = {**data["search"], "algorithm": "grid", "asha": None}
        specs.append(SearchSpec.model_validate(data))
    return specs


def run_then_rank(
    spec_path: str,
    target: str,
    *,
    storage: str | None = None,
    address: str | None = None,
    ft_size: int | None | str = "auto",
    select_metric: str = "val_mae",
    top: int = 3,
    base_dir: str | None = None,
    verbose: int = 1,
    job_fn: Callable[..., dict[str, Any]] | None = None,
) -> tuple[Results, BestPair]:
    """Run the spec (and any fill-ins it still needs) and rank ``target``'s configurations."""
    spec = load_spec(spec_path, {"storage": storage})
    if target not in spec.targets:
        raise ValueError(
            f"--target {target!r} is not a target of {spec_path} "
            f"(targets: {', '.join(spec.targets)})"
        )
    if spec.targets != [target]:
        data = spec.model_dump()
        data.update(targets=[target], name=f"{spec.name}-{target}")
        spec = SearchSpec.model_validate(data)
    base = os.path.abspath(base_dir or os.getcwd())
    spec = resolve_storage(spec, base)
    kwargs = {
        "address": address,
        "resume": True,
        "base_dir": base,
        "verbose": verbose,
        "job_fn": job_fn,
    }
    run_search(spec, **kwargs)
    results = _load(spec)
    best = rank(results, target, ft_size=ft_size, select_metric=select_metric)
    fills = fill_specs(spec, best, top)
    for fill in fills:
        logger.info("best-pair: running %s for missing seeds/baselines", fill.name)
        run_search(fill, **kwargs)
    if fills:
        results = _load(spec)
        best = rank(results, target, ft_size=ft_size, select_metric=select_metric)
    return results, best


def _load(spec: Any) -> Results:
    """Rows of the spec's search and its fill-ins (other searches in the storage excluded)."""
    results = load_runs(spec.storage)
    mine = [
        d
        for d in results.search_dirs
        if _name(d) == spec.name or _name(d).startswith(f"{spec.name}-fill-")
    ]
    keep = results.runs["search_dir"].isin(mine)
    plans = {k: v for k, v in results.plans.items() if k == spec.name}
    specs = {k: v for k, v in results.specs.items() if k == spec.name}
    return Results(results.runs[keep].reset_index(drop=True), mine, plans, specs)


def _name(directory: str) -> str:
    return str(directory).rstrip("/").rsplit("/", 1)[-1]
