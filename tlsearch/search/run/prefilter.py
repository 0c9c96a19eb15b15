"""``search.prefilter``: fine-tune only from the best-ranked PT models of each target.

A search with several PT sources fine-tunes every one of them (issue 15, part 2). With
``search.prefilter: {keep: K, by: probe_mae|logme}``, the first transfer seed-run of a
*ranking group* (one FT target, FT size and sampling method) scores every PT model of that
target, i.e. each source at each of its PT sizes, on the group's FT sample (the structures its
first seed's fine-tuning would train on; :mod:`tlsearch.transfer.rank_sources`: one frozen
trunk pass and a closed-form estimate per model). The seed-runs from the K best-ranked models
train as usual; the others are recorded as ``skipped`` rows whose ``error`` names the rank
and the score, so the analysis knows what was not run and why.

The ranking is computed once per group under a cluster-wide lock
(``<search>/locks/rank-<key>``) and kept in ``<search>/prefilter/<key>.json``, so every trial,
retry and ``--resume`` reads the same decision. Scoring needs every PT model of the target:
the ranking trial waits for (or runs) their PT jobs through the same row locks as fine-tuning.
A PT model that failed ranks last (its seed-runs would fail anyway).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tlsearch.jobs.errors import PretrainUnavailableError
from tlsearch.jobs.identity import stable_hash
from tlsearch.search.plan.points import Point, pt_sizes_for, sources_for
from tlsearch.search.run.claims import exclusive
from tlsearch.search.run.job_fn import resolve_job_fn
from tlsearch.storage.uri import is_remote, join, read_text, resolve

logger = logging.getLogger(__name__)

#: ``scorer(source, checkpoint, job) -> {"probe_mae": ..., "logme": ..., ...}``, ``job`` the
#: group's FT job of the first seed (its data, size, sampling and seed define the sample).
Scorer = Callable[[str, str, Any], dict[str, Any]]
#: Which way is better for each estimate.
HIGHER_IS_BETTER = {"probe_mae": False, "logme": True}


def candidates(spec: Any, point: Point) -> list[Point]:
    """Every PT model of ``point``'s target as a point of its ranking group: each source at
    each of its PT sizes, with the group's FT size, sampling, strategy and learning rate."""
    return [
        replace(point, kind="mpt" if s.kind == "mpt" else "finetune", pt_source=s.name, pt_size=n)
        for s in sources_for(spec, point.target)
        for n in pt_sizes_for(spec, s)
    ]


def model_name(point: Point) -> str:
    """``source`` or ``source@pt_size``: one PT model in a ranking."""
    return str(point.pt_source) if point.pt_size is None else f"{point.pt_source}@{point.pt_size}"


def group_key(spec: Any, point: Point) -> str:
    """16 hex digits naming ``point``'s ranking group and how it is ranked."""
    prefilter = spec.search.prefilter
    return stable_hash(
        {
            "target": point.target,
            "ft_size": point.ft_size,
            "sampling": point.sampling,
            "seed": spec.seeds[0],
            "by": prefilter.by,
            "models": [model_name(c) for c in candidates(spec, point)],
        }
    )[:16]


def skip_reason(env: Any, point: Point, ensure_checkpoint: Callable[[Point], str]) -> str | None:
    """Why ``point``'s seed-runs are skipped by the prefilter, or None when they run.

    ``ensure_checkpoint(candidate)``: the PT checkpoint of a candidate (waiting for or running
    its PT job); raises :class:`PretrainUnavailableError` when that PT job failed.
    """
    prefilter = env.spec.search.prefilter
    if prefilter is None or not point.uses_pretraining:
        return None
    ranking = ensure_ranking(env, point, ensure_checkpoint)
    name = model_name(point)
    entry = next(e for e in ranking["models"] if e["model"] == name)
    if entry["rank"] <= prefilter.keep:
        return None
    score = entry[prefilter.by]
    shown = "n/a" if score is None else f"{score:.4g}"
    return (
        f"skipped by search.prefilter: PT model {name} ranks {entry['rank']} of "
        f"{len(ranking['models'])} for {point.target} by {prefilter.by} ({shown}; "
        f"keep {prefilter.keep}: {', '.join(ranking['kept'])}); "
        f"ranking in prefilter/{ranking['key']}.json"
    )


def ensure_ranking(
    env: Any, point: Point, ensure_checkpoint: Callable[[Point], str]
) -> dict[str, Any]:
    """The ranking of ``point``'s group: read back, or computed once under its lock."""
    key = group_key(env.spec, point)
    uri = join(env.search_dir, "prefilter", f"{key}.json")
    text = read_text(uri)
    if text is not None:
        return json.loads(text)
    with exclusive(join(env.search_dir, "locks", f"rank-{key}")):
        text = read_text(uri)
        if text is not None:
            return json.loads(text)
        ranking = compute_ranking(env, point, key, ensure_checkpoint)
        write_text(uri, json.dumps(ranking, indent=2))
        logger.info(
            "prefilter %s: %s kept for %s (FT size %s, %s)",
            key,
            ", ".join(ranking["kept"]),
            point.target,
            point.ft_size,
            point.sampling,
        )
        return ranking


def compute_ranking(
    env: Any, point: Point, key: str, ensure_checkpoint: Callable[[Point], str]
) -> dict[str, Any]:
    """Score every PT model of the group and rank them (best first)."""
    spec, prefilter = env.spec, env.spec.search.prefilter
    scorer = resolve_scorer(spec.testing.rank_fn)
    seed = spec.seeds[0]
    job = env.seed_run(point, seed).job  # the plan's FT job of the group's first seed
    entries = []
    for candidate in candidates(spec, point):
        entry: dict[str, Any] = {"model": model_name(candidate), "pt_source": candidate.pt_source}
        entry.update(pt_size=candidate.pt_size, probe_mae=None, logme=None, error=None)
        start = time.perf_counter()
        try:
            checkpoint = ensure_checkpoint(candidate)  # may wait for (or run) its PT job
            entry["pt_wait_seconds"] = time.perf_counter() - start
            start = time.perf_counter()
            scores = scorer(str(candidate.pt_source), checkpoint, job)
            entry.update({k: _finite(scores.get(k)) for k in ("probe_mae", "logme")})
            entry["baseline_mae"] = _finite(scores.get("baseline_mae"))
            entry["n"] = scores.get("n")
        except PretrainUnavailableError as exc:
            entry["error"] = str(exc)
        entry["seconds"] = time.perf_counter() - start
        entries.append(entry)
    ranked = sorted(entries, key=lambda e: _order(e, prefilter.by))
    for rank, entry in enumerate(ranked, 1):
        entry["rank"] = rank
    kept = [e["model"] for e in ranked[: prefilter.keep] if e[prefilter.by] is not None]
    return {
        "key": key,
        "target": point.target,
        "ft_size": point.ft_size,
        "sampling": point.sampling,
        "seed": seed,
        "by": prefilter.by,
        "keep": prefilter.keep,
        "kept": kept,
        "models": ranked,
    }


def _order(entry: dict[str, Any], by: str) -> tuple[bool, float]:
    """Sort key: scored models first, best first; unscored ones last."""
    value = entry[by]
    if value is None:
        return (True, 0.0)
    return (False, -value if HIGHER_IS_BETTER[by] else value)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def resolve_scorer(ref: str | None) -> Scorer:
    """``"module:function"`` (tests) or :func:`score_with_trunk`."""
    if not ref:
        return score_with_trunk
    return resolve_job_fn(ref)


def score_with_trunk(source: str, checkpoint: str, job: Any) -> dict[str, Any]:
    """Both estimates of PT ``checkpoint`` on the FT sample of ``job`` (its data, size,
    sampling and seed, with the test part held out as fine-tuning holds it out; its graph
    settings and cache). The search's scorer, and ``tlsearch bench rank-sources``'s."""
    import torch

    from tlsearch.graphs.settings import GraphSettings
    from tlsearch.jobs.run import split_test  # torch, as above: only where a trial scores
    from tlsearch.training.loop import select_device
    from tlsearch.transfer.rank_sources import score_source

    if job.train.get("num_threads"):  # the trial's CPUs, as its training uses them
        torch.set_num_threads(int(job.train["num_threads"]))
    ref = job.data
    with tempfile.TemporaryDirectory(prefix="tlsearch-rank-") as tmp:
        data, target = ref.data, ref.target
        if ref.test is None and ref.test_fraction > 0:  # the pool fine-tuning draws from
            data, _ = split_test(ref, Path(tmp) / "data")
            target = None
        score = score_source(
            checkpoint,
            data,
            target=target,
            size=ref.size,
            sampling=ref.sampling,
            seed=job.seed,
            cache_dir=Path(job.cache_dir) if job.cache_dir else None,
            data_home=Path(ref.data_home) if ref.data_home else None,
            graphs=GraphSettings(**job.graphs),
            device=str(select_device(job.train.get("device", "auto"))),  # as fine-tuning
        )
    logger.info("PT model %s scored in %.1f s", source, score.seconds)
    return score.as_row()


def write_text(uri: str, text: str) -> None:
    """Write a small text file to storage whole (a temporary name renamed locally)."""
    fs, path = resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    if is_remote(uri):
        with fs.open_output_stream(path) as out:  # object stores publish on close
            out.write(text.encode("utf-8"))
        return
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
