"""``tlsearch bench search [SPEC]``: where a whole search's wall time goes.

Runs SPEC (default ``search_spaces/quickstart.yaml``) in a fresh storage folder through the
``tlsearch search`` command (passed in by :mod:`tlsearch.cli.bench`, which sits above this
layer: local Ray start-up, PT jobs, configuration experiments, status and plot), then reads the
Parquet rows, ``plan.json`` and Tune's per-trial ``result.json`` files and reports, printed and
as JSON:

**Overhead.** ``slots`` is the number of trials that can run at once: the cluster's CPUs (and
GPUs) divided by the spec's per-trial ``resources``, capped by ``max_concurrent`` (2 on a
2-CPU machine with ``resources: {cpu: 1}``). The search had ``slots * wall_seconds``
slot-seconds; only the training loops (``train_seconds``: the epochs, training and validation,
of every seed-run and of every PT job trained by this search) are useful work::

    overhead = 1 - sum(train_seconds) / (slots * wall_seconds)

``wall_seconds`` runs from the start of this command (the process) to the end of the search command,
including Ray's start-up, the status table, the plot and Ray's shutdown. A PT model reused
from ``<storage>/pretrained`` (``pt_cache_hit``) adds no training time. This is the demanding
definition: a slot left idle (a PT phase with fewer PT jobs than slots, the tail of an
experiment) counts as overhead, because the user waits for it. ``overhead_after_start`` is the
same ratio without the time before the first experiment (imports, Ray start-up), the part that
does not grow with the search.

**Breakdown** of the ``slots * wall_seconds`` slot-seconds (they add up to it):

- ``train``: sum of ``train_seconds``;
- ``run_setup``: sum over rows of ``wall_seconds - train_seconds``: loading or generating the
  data, opening or building the graph cache, building the model or loading the PT model, the
  final validation/test predictions and the files (model, predictions, metrics);
- ``trial_bookkeeping``: Tune's per-trial time (``time_total_s``) minus the rows' wall time:
  reading existing rows, writing rows, ``tune.report``;
- ``before_search``: slots x (command start to the first experiment), of which ``ray_start``
  is slots x the ``ray.init`` call;
- ``outside_trials[<experiment>]``: slots x the experiment's wall minus its trials' Tune time:
  trial actors starting (a new process imports torch), Tune scheduling, and idle slots;
- ``after_search``: slots x the time after the last experiment (and between experiments):
  status, plot, Ray shutdown.

**Graph cache.** Every job counts the graph stores it read from the cache
(``graph_cache_hits``) and built (``graph_cache_misses``) in its row. With a fresh storage the
cache ``<storage>/graphs`` starts empty, so the ideal is one build per cache entry and a hit for
every later use: ``redundant_builds = misses - entries`` should be 0.

**PT jobs.** ``requested``: the plan's PT jobs (``plan.json``); ``trained``: PT rows whose
model this search trained (not reused from the PT cache); ``reused``: models found in the cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_SPEC = Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart.yaml"
REPORT_NAME = "bench_search.json"

#: Runs ``tlsearch search ARGV...`` in this process and returns its exit code.
SearchCommand = Callable[[Sequence[str]], int]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlsearch bench search",
        description="Run a search in a fresh storage folder and report its overhead (wall time "
        "vs training time), graph-cache hits and PT jobs run vs requested.",
    )
    p.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC, metavar="SPEC.yaml")
    p.add_argument(
        "--storage",
        type=Path,
        default=None,
        help="fresh (missing or empty) folder for the search (default: a new temporary folder)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="run on this Ray cluster (e.g. 'auto' after 'ray start --head') instead of "
        "starting a local Ray: measures a search without Ray's start-up",
    )
    p.add_argument("--smoke", action="store_true", help="the spec's --smoke version")
    p.add_argument("--no-plot", action="store_true", help="pass --no-plot to the search")
    p.add_argument("--json", type=Path, default=None, help=f"report file (default <storage>/"
                   f"{REPORT_NAME})")  # fmt: skip
    return p


def main(argv: Sequence[str] | None, *, search_command: SearchCommand) -> int:
    """Run the benchmark; print the summary and the JSON report; 0 when the search finished.

    ``search_command`` runs ``tlsearch search ARGV...`` and returns its exit code."""
    start = _process_start()
    args = _parser().parse_args(argv)
    storage = fresh_storage(args.storage)
    report = run_bench(
        args.spec,
        storage,
        start=start,
        smoke=args.smoke,
        plot=not args.no_plot,
        address=args.address,
        search_command=search_command,
    )
    path = args.json or storage / REPORT_NAME
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(format_report(report) + f"\nreport: {path}\n")
    return 0 if report["search_exit_code"] == 0 else 1


def _process_start() -> float:
    """When this process started (Linux ``/proc``), else now: the command's start."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


def fresh_storage(storage: Path | None) -> Path:
    """``storage`` (created; refused unless missing or empty), or a new temporary folder."""
    if storage is None:
        return Path(tempfile.mkdtemp(prefix="tlsearch-bench-search-"))
    if storage.exists() and any(storage.iterdir()):
        raise ValueError(f"{storage} is not empty: the benchmark needs a fresh storage folder")
    storage.mkdir(parents=True, exist_ok=True)
    return storage.resolve()


def run_bench(
    spec_path: Path,
    storage: Path,
    *,
    start: float,
    smoke: bool = False,
    plot: bool = True,
    address: str | None = None,
    search_command: SearchCommand,
) -> dict[str, Any]:
    """Run the search command on ``spec_path`` into ``storage`` (on the Ray cluster at
    ``address``, else a local Ray it starts) and measure it."""
    import ray

    from tlsearch.search.plan.prepare import smoke_spec
    from tlsearch.search.plan.spec import load_spec
    from tlsearch.search.run import driver

    spec = load_spec(spec_path, {"storage": str(storage)})
    if smoke:
        spec = smoke_spec(spec)
    ray_was_up = ray.is_initialized()
    argv = ["search", str(spec_path), "--storage", str(storage)]
    argv += (["--smoke"] if smoke else []) + ([] if plot else ["--no-plot"])
    argv += ["--address", address] if address else []
    code = search_command(argv)  # stops the Ray it started (as ``tlsearch search`` does)
    cluster = driver.LAST_PHASES.get("cluster") or {}
    if ray.is_initialized() and not ray_was_up:
        ray.shutdown()  # what the command's exit does (an interrupted search)
    end = time.time()
    slots = trial_slots(cluster, spec.resources.cpu, spec.resources.gpu, spec.max_concurrent)
    report = measure_search(
        storage / spec.name,
        start=start,
        end=end,
        slots=slots,
        phases=dict(driver.LAST_PHASES),
        cache_dir=storage / "graphs",
    )
    return {
        "spec": str(spec_path),
        "smoke": smoke,
        "address": address,
        "search_exit_code": code,
        **report,
    }


def trial_slots(
    cluster: Mapping[str, float], cpu: float, gpu: float, max_concurrent: int | None
) -> int:
    """Trials that fit at once: cluster resources / per-trial resources, capped."""
    fits = [math.floor(cluster.get(name, 0.0) / need + 1e-9) for name, need in
            (("CPU", cpu), ("GPU", gpu)) if need > 0]  # fmt: skip
    slots = min(fits) if fits else 1
    if max_concurrent:
        slots = min(slots, max_concurrent)
    return max(slots, 1)


# --- measuring from what the search wrote ---------------------------------------------------


def measure_search(
    search_dir: Path | str,
    *,
    start: float,
    end: float,
    slots: int,
    phases: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """The report of a finished search (see the module docstring for the definitions).

    Args:
        search_dir: ``<storage>/<name>`` (local).
        start, end: the command's wall-clock start and end (``time.time()``).
        slots: concurrent trial slots.
        phases: :data:`tlsearch.search.run.driver.LAST_PHASES` of the run (optional).
        cache_dir: the search's graph cache (entries counted for the ideal number of builds).
    """
    from tlsearch.results.store import read_runs

    search_dir = Path(search_dir)
    rows = read_runs(str(search_dir / "runs")).to_pylist()
    plan = json.loads((search_dir / "plan.json").read_text())
    trials = tune_trial_times(search_dir / "tune")
    wall = end - start
    trained = [r for r in rows if _trained_here(r)]
    train = sum(r["train_seconds"] for r in trained)
    run_wall = sum(r["wall_seconds"] or 0.0 for r in rows)
    run_setup = sum((r["wall_seconds"] or 0.0) - (r["train_seconds"] or 0.0) for r in trained)
    run_setup += sum(r["wall_seconds"] or 0.0 for r in rows if not _trained_here(r))
    trial_total = sum(t["seconds"] for t in trials.values())
    slot_seconds = slots * wall
    breakdown: dict[str, Any] = {
        "train": train,
        "run_setup": run_setup,
        "trial_bookkeeping": trial_total - run_wall,
    }
    first_experiment = None
    if phases and phases.get("experiments"):
        experiments = [p for p in phases["experiments"] if len(p) == 3]
        first_experiment = experiments[0][1]
        connect = phases.get("connect") or []
        if len(connect) == 2:
            breakdown["ray_start"] = slots * (connect[1] - connect[0])
        breakdown["before_search"] = slots * (first_experiment - start)
        per_experiment = defaultdict(float)
        for trial in trials.values():
            per_experiment[trial["experiment"]] += trial["seconds"]
        breakdown["outside_trials"] = {
            name: slots * (t1 - t0) - per_experiment.get(name, 0.0) for name, t0, t1 in experiments
        }
        in_experiments = sum(t1 - t0 for _, t0, t1 in experiments)
        breakdown["after_search"] = slots * (end - first_experiment - in_experiments)
    useful = train / slot_seconds if slot_seconds > 0 else math.nan
    after_start = slots * (end - first_experiment) if first_experiment else math.nan
    return {
        "wall_seconds": wall,
        "slots": slots,
        "slot_seconds": slot_seconds,
        "train_seconds_sum": train,
        "overhead": 1.0 - useful,
        "overhead_after_start": 1.0 - train / after_start if after_start > 0 else None,
        "mean_concurrency": trial_total / wall if wall > 0 else None,
        "rows": len(rows),
        "seed_runs": sum(r["kind"] != "pretrain" for r in rows),
        "trials": len(trials),
        "breakdown_slot_seconds": breakdown,
        "phases_from_start": _relative_phases(phases or {}, start, end),
        "graph_cache": graph_cache_stats(rows, cache_dir),
        "pt_jobs": pt_job_stats(rows, plan),
    }


def _relative_phases(phases: Mapping[str, Any], start: float, end: float) -> dict[str, Any]:
    """The driver's phases as seconds since the command started."""
    out: dict[str, Any] = {}
    if phases.get("connect"):
        out["ray_init"] = [round(t - start, 3) for t in phases["connect"]]
    for name, *times in phases.get("experiments", []):
        out[f"experiment {name}"] = [round(t - start, 3) for t in times]
    out["end"] = round(end - start, 3)
    return out


def _trained_here(row: Mapping[str, Any]) -> bool:
    """A row whose training happened in this search (a reused PT model's did not)."""
    if row["train_seconds"] is None:
        return False
    return not (row["kind"] == "pretrain" and row.get("pt_cache_hit"))


def tune_trial_times(tune_dir: Path) -> dict[str, dict[str, Any]]:
    """``trial_id -> {experiment, seconds}``: Tune's ``time_total_s`` of every trial.

    Read from ``<tune_dir>/<experiment>/trial_*/result.json`` (one JSON line per report).
    The time a trial's actor takes to start is not in it.
    """
    out: dict[str, dict[str, Any]] = {}
    for result in sorted(Path(tune_dir).glob("*/*/result.json")):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if not lines:
            continue
        last = lines[-1]
        out[str(last["trial_id"])] = {
            "experiment": result.parent.parent.name,
            "seconds": float(last.get("time_total_s") or 0.0),
        }
    return out


def graph_cache_stats(rows: Sequence[Mapping[str, Any]], cache_dir: Path | None) -> dict:
    """Hits, misses, hit rate, cache entries and redundant builds (see the module docstring)."""
    reporting = [r for r in rows if r.get("graph_cache_hits") is not None]
    hits = sum(int(r["graph_cache_hits"] or 0) for r in reporting)
    misses = sum(int(r["graph_cache_misses"] or 0) for r in reporting)
    entries = None
    if cache_dir is not None and Path(cache_dir).is_dir():
        entries = sum(1 for p in Path(cache_dir).iterdir() if (p / "meta.json").is_file())
    redundant = None if entries is None else max(misses - entries, 0)
    return {
        "jobs_reporting": len(reporting),
        "jobs_that_built": sum(int(r["graph_cache_misses"] or 0) > 0 for r in reporting),
        "hits": hits,
        "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else None,
        "entries": entries,
        "redundant_builds": redundant,
        "goal_met": None if redundant is None else redundant == 0,
    }


def pt_job_stats(rows: Sequence[Mapping[str, Any]], plan: Mapping[str, Any]) -> dict:
    """PT jobs requested by the plan vs trained by this search, reused and failed."""
    pt = [r for r in rows if r["kind"] == "pretrain"]
    failed = sum(r["status"] == "failed" for r in pt)
    reused = sum(bool(r.get("pt_cache_hit")) for r in pt)
    requested = plan.get("planned_pretrain_jobs")
    trained = len(pt) - failed - reused
    return {
        "requested": requested,
        "trained": trained,
        "reused": reused,
        "failed": failed,
        "goal_met": requested is not None and trained + reused == requested,
    }


def format_report(report: Mapping[str, Any]) -> str:
    """A few readable lines."""
    slots, wall = report["slots"], report["wall_seconds"]
    lines = [
        f"search bench: {report.get('spec', '')}  wall {wall:.1f} s, {slots} trial slot(s), "
        f"{report['trials']} trials, {report['rows']} rows",
        f"training (sum of train_seconds) {report['train_seconds_sum']:.1f} s of "
        f"{report['slot_seconds']:.1f} slot-seconds: overhead {report['overhead']:.1%}"
        + (
            f" ({report['overhead_after_start']:.1%} after the start-up)"
            if report.get("overhead_after_start") is not None
            else ""
        ),
        "breakdown (slot-seconds):",
    ]
    for name, value in report["breakdown_slot_seconds"].items():
        if isinstance(value, Mapping):
            for sub, seconds in value.items():
                lines.append(f"  {name}[{sub}]: {seconds:.1f}")
        else:
            lines.append(f"  {name}: {value:.1f}")
    g, p = report["graph_cache"], report["pt_jobs"]
    rate = "n/a" if g["hit_rate"] is None else f"{g['hit_rate']:.0%}"
    lines.append(
        f"graph cache: {g['hits']} hits, {g['misses']} builds ({rate} hits), "
        f"{g['entries']} entries, {g['redundant_builds']} redundant builds"
    )
    lines.append(
        f"PT jobs: {p['trained']} trained, {p['reused']} reused, {p['failed']} failed, "
        f"of {p['requested']} requested"
    )
    return "\n".join(lines)
