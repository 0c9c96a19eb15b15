"""``tlsearch bench packing``: fine-tuning runs sharing one device vs one run at a time.

The question of a fractional-GPU search (``resources: {gpu: 0.25}``): do K fine-tuning runs on
one GPU finish more work per second than the same runs one after the other? Both sides run
through ``tlsearch search`` itself (:func:`tlsearch.search.run.driver.run_search`) on one Ray:

1. ``warm`` (not measured): the PT job of the FT runs and one FT seed-run with an extra seed,
   so the PT model (``<storage>/pretrained``), the generated data and the graph cache exist
   before anything is timed; the measured phases fine-tune from that model as a checkpoint
   source (no PT trial in them);
2. ``alone``: N FT seed-runs, one at a time (``max_concurrent: 1``), each with a whole device:
   ``{gpu: 1}`` on a GPU cluster (and the CPUs a packed run gets, CPUs/K, so only the GPU share
   differs), all the CPUs of the node on a CPU-only one;
3. ``packed``: the same N seed-runs (same seeds, same samples, another search name), K at a time:
   ``{gpu: 1/K}`` each, or ``{cpu: CPUs/K}`` without a GPU.

Every seed-run trains ``n_train`` structures per epoch for ``epochs_run`` epochs (validation
included in its ``train_seconds``). A phase's aggregate throughput is the structures its rows
trained divided by its window, from the first row's start to the last row's end (rows hold
``wall_seconds`` and ``finished_at``; ``peak_concurrent_runs`` says how many really overlapped).
A trial process's start (imports, a CUDA context) is in the window of its first run, so packing
pays K starts where running alone pays one. The report gives both phases and
``ratio = packed / alone`` (goal on a GPU: at least 3x with K = 4).

On a GPU the runs default to the paper's model (4+4 layers, 256 wide) fine-tuning on 800
generated structures; on a CPU-only machine to the quickstart's small model, so the benchmark
runs anywhere (there it compares K small runs on CPUs/K cores each against one run on all
cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPORT_NAME = "bench_packing.json"
PHASES = ("alone", "packed")


@dataclass(frozen=True)
class PackingSetup:
    """What the FT runs are and how each phase runs them (see the module docstring)."""

    per_device: int
    runs: int
    data: str
    pt_data: str
    ft_size: int
    epochs: int
    pt_epochs: int
    model: dict[str, Any]
    graphs: dict[str, Any]
    gpu: bool
    cpus: float
    cpus_per_run: float
    job_fn: str | None = None


def quickstart_model() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model, graphs)`` overrides of ``search_spaces/quickstart.yaml`` (the small model)."""
    from tlsearch.bench.search import DEFAULT_SPEC
    from tlsearch.search.plan.spec import load_spec

    spec = load_spec(DEFAULT_SPEC)
    return dict(spec.model), dict(spec.graphs)


def default_setup(cluster: Mapping[str, float], per_device: int | None = None) -> PackingSetup:
    """Defaults for this cluster: the paper's model on a GPU, the quickstart's on CPUs."""
    gpu = cluster.get("GPU", 0.0) >= 1
    cpus = float(cluster.get("CPU", 1.0))
    if gpu:
        k = per_device or 4
        return PackingSetup(
            per_device=k, runs=2 * k, data="generated:1000:41", pt_data="generated:600:42",
            ft_size=800, epochs=5, pt_epochs=2, model={}, graphs={}, gpu=True, cpus=cpus,
            cpus_per_run=cpus / k,
        )  # fmt: skip
    k = per_device or max(int(cpus), 1)
    model, graphs = quickstart_model()
    return PackingSetup(
        per_device=k, runs=2 * k, data="generated:200:41", pt_data="generated:200:42",
        ft_size=80, epochs=10, pt_epochs=5, model=model, graphs=graphs, gpu=False, cpus=cpus,
        cpus_per_run=cpus / k,
    )  # fmt: skip


def phase_resources(setup: PackingSetup, phase: str) -> tuple[dict[str, float], int]:
    """``(resources per run, max_concurrent)`` of ``phase`` (warm runs like ``alone``)."""
    if phase == "packed":
        if setup.gpu:
            return {"cpu": setup.cpus_per_run, "gpu": 1.0 / setup.per_device}, setup.per_device
        return {"cpu": setup.cpus_per_run, "gpu": 0.0}, setup.per_device
    if setup.gpu:
        return {"cpu": setup.cpus_per_run, "gpu": 1.0}, 1
    return {"cpu": setup.cpus, "gpu": 0.0}, 1


def phase_spec(
    setup: PackingSetup, phase: str, storage: str | Path, pt_checkpoint: str | None = None
) -> Any:
    """The search spec of one phase: N FT seed-runs (warm: one, with an extra seed) from the PT
    job on ``pt_data``, or from ``pt_checkpoint`` (the model that job trained)."""
    from tlsearch.search.plan.spec import SearchSpec

    resources, concurrent = phase_resources(setup, phase)
    seeds = [setup.runs] if phase == "warm" else list(range(setup.runs))
    source = {"name": "source"} | (
        {"checkpoint": pt_checkpoint} if pt_checkpoint else {"dataset": "source"}
    )
    return SearchSpec.model_validate(
        {
            "name": f"packing-{phase}",
            "description": f"tlsearch bench packing, phase {phase}",
            "storage": str(storage),
            "datasets": {"source": {"data": setup.pt_data}, "target": {"data": setup.data}},
            "targets": ["target"],
            "pt_sources": [source],
            "scratch": False,
            "ft_sizes": [setup.ft_size],
            "strategies": ["unfreeze_all"],
            "sampling": ["random"],
            "seeds": seeds,
            "train": {"epochs": setup.epochs, "batch_size": 16, "early_stopping_patience": None},
            "pretrain": {"train": {"epochs": setup.pt_epochs}},
            "model": setup.model,
            "graphs": setup.graphs,
            "resources": resources,
            "max_concurrent": concurrent,
            "max_failures": 0,
            "testing": {"job_fn": setup.job_fn},
        }
    )


def phase_throughput(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate training throughput of a phase's FT rows (see the module docstring).

    Raises:
        ValueError: a row that did not finish ``ok`` (the comparison would be meaningless).
    """
    rows = [r for r in rows if r["kind"] != "pretrain"]
    if not rows:
        raise ValueError("the phase recorded no seed-runs")
    bad = [f"{r['run_id']} ({r['status']}: {r.get('error') or ''})" for r in rows
           if r["status"] != "ok"]  # fmt: skip
    if bad:
        raise ValueError(f"seed-runs did not finish: {'; '.join(bad)}")
    ends = [r["finished_at"].timestamp() for r in rows]
    starts = [end - r["wall_seconds"] for end, r in zip(ends, rows, strict=True)]
    window = max(ends) - min(starts)
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in ends])  # ends first on ties
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    structures = sum(int(r["n_train"]) * int(r["epochs_run"]) for r in rows)
    return {
        "runs": len(rows),
        "peak_concurrent_runs": peak,
        "window_seconds": window,
        "structures_trained": structures,
        "structures_per_second": structures / window if window > 0 else None,
        "mean_run_structures_per_second": sum(r["structures_per_second"] for r in rows) / len(rows),
        "sum_train_seconds": sum(r["train_seconds"] for r in rows),
        "devices": sorted({str(r["device"]) for r in rows}),
    }


def pt_checkpoint(rows: Sequence[Mapping[str, Any]]) -> str:
    """The model of the warm phase's PT job.

    Raises:
        ValueError: the PT job failed (its error is in the message).
    """
    pt = [r for r in rows if r["kind"] == "pretrain"]
    if len(pt) != 1 or pt[0]["status"] != "ok" or not pt[0]["checkpoint_uri"]:
        errors = "; ".join(f"{r['run_id']}: {r['status']} {r.get('error') or ''}" for r in pt)
        raise ValueError(f"the warm phase's PT job did not produce a model ({errors or 'no row'})")
    return str(pt[0]["checkpoint_uri"])


def run_packing(
    setup: PackingSetup, storage: Path, *, address: str | None = None
) -> dict[str, Any]:
    """Run the warm, alone and packed phases on the connected Ray; the report."""
    from tlsearch.results.paths import locate
    from tlsearch.results.store import RunStore
    from tlsearch.search.run import driver
    from tlsearch.storage.uri import join

    report: dict[str, Any] = {"setup": asdict(setup), "phases": {}}
    checkpoint = None
    for phase in ("warm", *PHASES):
        spec = phase_spec(setup, phase, storage, checkpoint)
        logger.info("packing bench: phase %s (%s, at most %s at once)", phase,
                    spec.resources.model_dump(), spec.max_concurrent)  # fmt: skip
        driver.run_search(spec, address=address, verbose=0)
        rows = RunStore.for_search(spec.storage, spec.name).rows()
        if phase == "warm":
            checkpoint = locate(pt_checkpoint(rows), join(spec.storage, spec.name))
            continue
        stats = phase_throughput(rows)
        _, started, ended = driver.LAST_PHASES["experiments"][-1]
        stats["experiment_seconds"] = ended - started
        report["phases"][phase] = {"resources": spec.resources.model_dump(),
                                   "max_concurrent": spec.max_concurrent, **stats}  # fmt: skip
    alone, packed = (report["phases"][p]["structures_per_second"] for p in PHASES)
    ratio = packed / alone if alone and packed else None
    report["ratio"] = ratio
    report["goal"] = report["goal_met"] = None  # the goal is a GPU's
    if setup.gpu:
        report["goal"] = "packed >= 3x alone with 4 runs per GPU"
        report["goal_met"] = ratio is not None and ratio >= 3.0
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """A few readable lines."""
    setup = report["setup"]
    device = "GPU" if setup["gpu"] else "CPU-only node"
    lines = [
        f"packing bench ({device}): {setup['runs']} FT seed-runs of {setup['ft_size']} "
        f"structures x {setup['epochs']} epochs, {setup['per_device']} per device when packed"
    ]
    for phase in PHASES:
        p = report["phases"][phase]
        lines.append(
            f"  {phase:6s} {p['resources']} x{p['max_concurrent']}: {p['runs']} runs "
            f"(at most {p['peak_concurrent_runs']} at once) in "
            f"{p['window_seconds']:.1f} s, {p['structures_per_second']:.1f} structures/s "
            f"(each run {p['mean_run_structures_per_second']:.1f}/s on average)"
        )
    ratio = report["ratio"]
    goal = ""
    if report["goal"]:
        goal = f"; goal {report['goal']}: {'met' if report['goal_met'] else 'NOT met'}"
    lines.append(f"packed / alone: {ratio:.2f}x{goal}" if ratio else "packed / alone: n/a")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlsearch bench packing",
        description="N fine-tuning seed-runs K per device (0.25 GPU each for K=4) vs one at a "
        "time: aggregate training structures/s of both and their ratio.",
    )
    arg = p.add_argument
    arg("--per-device", type=int, metavar="K", help="runs sharing one device (default 4 on a "
        "GPU, the number of CPUs without one)")  # fmt: skip
    arg("--runs", type=int, metavar="N", help="seed-runs per phase (default 2K)")
    arg("--epochs", type=int, help="FT epochs per run")
    arg("--ft-size", type=int, help="FT training structures per run")
    arg("--small-model", action="store_true", help="the quickstart's small model also on a GPU")
    arg("--storage", type=Path, help="fresh folder for the searches (default: a temporary one)")
    arg("--address", help="Ray cluster (default: start a local Ray)")
    arg("--json", type=Path, help=f"report file (default <storage>/{REPORT_NAME})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the summary; 0 when every run finished."""
    import ray

    from tlsearch.bench.search import fresh_storage
    from tlsearch.search.run import driver

    args = _parser().parse_args(argv)
    storage = fresh_storage(args.storage)
    own_ray = not ray.is_initialized()
    try:
        driver.connect(args.address)
        setup = default_setup(driver.LAST_PHASES["cluster"], args.per_device)
        overrides = {"runs": args.runs, "epochs": args.epochs, "ft_size": args.ft_size}
        if args.small_model:
            model, graphs = quickstart_model()
            overrides.update(model=model, graphs=graphs)
        setup = replace(setup, **{k: v for k, v in overrides.items() if v is not None})
        report = run_packing(setup, storage, address=args.address)
    finally:
        if own_ray and ray.is_initialized():
            ray.shutdown()
    path = args.json or storage / REPORT_NAME
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(format_report(report) + f"\nreport: {path}\n")
    return 0
