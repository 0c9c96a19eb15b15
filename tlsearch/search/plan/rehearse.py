"""``tlsearch search SPEC --rehearse``: the whole plan of a spec, at a size 2 CPUs can finish.

A rehearsal runs every dataset, PT source, PT size, FT target, FT size, strategy, sampling
method, learning rate, seed, MPT corpus and DDP worker count exactly as the spec declares, on
the same files with the same record counts, splits and batch sizes. Only these shrink:

- the model: 1 ALIGNN + 1 GCN layer, 16 wide (every other architecture field as the spec's);
- the epochs: :data:`REHEARSAL_EPOCHS` for FT, scratch and PT, without early stopping;
- resources: no GPUs; one CPU per trial, and DDP PT jobs keep their worker count on
  :data:`DDP_WORKER_CPUS` CPUs each (gloo instead of NCCL), so ``pt_size``/``hparam``'s 4-worker
  jobs run on a laptop.

A ``search.prefilter`` still ranks the PT models (its scorer runs on the real files) but keeps
every one of them: which sources the real search keeps depends on real models, so every
configuration it might run is rehearsed.

Its rows carry ``rehearsal = true`` and its results go to ``<storage>/<name>-rehearsal/``;
``tlsearch analyze`` / ``best-pair`` / ``compare-paper`` refuse to mix them with real results.
It answers, before a GPU search is paid for: planned = completed, nothing failed, and the time
per seed-run (printed at the end, see :func:`rehearsal_summary`).
"""

from __future__ import annotations

import statistics
from typing import Any

from tlsearch.search.plan.points import pt_sizes_for
from tlsearch.search.plan.spec import SearchSpec

REHEARSAL_EPOCHS = 2
TINY_MODEL = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 16}
DDP_WORKER_CPUS = 0.25
DDP_COORDINATOR_CPUS = 0.25


def rehearsal_spec(spec: SearchSpec) -> SearchSpec:
    """``spec`` shrunk to a rehearsal (see the module docstring), named ``<name>-rehearsal``."""
    data = spec.model_dump()
    short = {"epochs": REHEARSAL_EPOCHS, "early_stopping_patience": None}
    data.update(name=f"{spec.name}-rehearsal", rehearsal=True)
    data["train"] = {**spec.train, **short}
    data["pretrain"]["train"] = {**spec.pretrain.train, **short}
    data["model"] = {**spec.model, **TINY_MODEL}
    data["resources"] = {"cpu": 1.0, "gpu": 0.0}
    if spec.search.prefilter is not None:  # rank, but keep every PT model (module docstring)
        every = sum(len(pt_sizes_for(spec, s)) for s in spec.pt_sources)
        data["search"]["prefilter"]["keep"] = max(every, spec.search.prefilter.keep)
    if spec.pretrain.num_workers > 1:
        data["pretrain"].update(cpus_per_worker=DDP_WORKER_CPUS, gpus_per_worker=0.0)
        data["pretrain"]["resources"] = {"cpu": DDP_COORDINATOR_CPUS, "gpu": 0.0}
    else:
        data["pretrain"]["resources"] = {"cpu": 1.0, "gpu": 0.0}
    return SearchSpec.model_validate(data)


def rehearsal_summary(rows: list[dict[str, Any]], planned: int | None) -> str:
    """One paragraph: planned vs completed, failures, and seconds per seed-run and PT job."""
    seed_runs = [r for r in rows if r.get("kind") != "pretrain"]
    pt = [r for r in rows if r.get("kind") == "pretrain"]
    done = [r for r in seed_runs if r.get("status") == "ok"]
    skipped = [r for r in seed_runs if r.get("status") == "skipped"]  # search.prefilter
    bad = [r for r in rows if r.get("status") not in ("ok", "skipped")]
    verdict = "PASSED" if planned == len(done) + len(skipped) and not bad else "FAILED"
    lines = [
        f"rehearsal {verdict}: planned {planned} seed-runs, completed {len(done)}, "
        + (f"skipped {len(skipped)}, " if skipped else "")
        + f"failed/diverged {len(bad)} (PT jobs: {len(pt)})",
        "  seconds per seed-run: " + _times(seed_runs),
        "  seconds per PT job:   " + _times(pt),
    ]
    for row in bad[:10]:
        lines.append(f"  {row['status']}: {row['run_id']}: {(row.get('error') or '')[:300]}")
    return "\n".join(lines)


def _times(rows: list[dict[str, Any]]) -> str:
    values = sorted(float(r["wall_seconds"]) for r in rows if r.get("wall_seconds") is not None)
    if not values:
        return "-"
    return (
        f"median {statistics.median(values):.1f}, max {values[-1]:.1f}, "
        f"total {sum(values):.0f} (n={len(values)})"
    )


def rehearsal_report(status: Any) -> str:
    """:func:`rehearsal_summary` of a finished search (a :class:`SearchStatus`)."""
    from tlsearch.results.store import read_runs
    from tlsearch.storage.uri import join

    rows = read_runs(join(status.search_dir, "runs")).to_pylist()
    return rehearsal_summary(rows, status.planned)
