"""``tlsearch bench gpu`` (``scripts/gpu_check.sh``): the GPU check of a CUDA node, one table.

Runs unattended on a GPU node; on a node without a usable CUDA GPU it prints one line saying
why and exits 2 (nothing else runs). The checks, each recorded ``ok``, ``FAILED`` (its error)
or ``skipped`` (why), so one failing check does not hide the others:

0. ``parity``: the fused kernels against the reference equations on CUDA
   (:func:`tlsearch.model.kernel_parity.kernel_parity`: outputs, every parameter's gradient
   and the running moments of a small ALIGNN, training and eval mode), the check that
   ``kernel: auto`` waits for before it runs the fused kernels on CUDA
   (:mod:`tlsearch.model.kernels.choice`);
1. ``train``: CUDA training throughput of the paper's model (4+4 layers, 256 wide), tlsearch vs
   alignn's pure-PyTorch ``ALIGNNAtomWisePure`` on the same batches
   (:func:`tlsearch.bench.train.bench_train`), at each ``--batch-sizes``;
2. ``memory``: the peak CUDA memory of one fine-tuning-sized run (the packing bench's: the
   paper's model, 800 training structures, batch 16) trained through ``run_job`` in this
   process under the cap a ``gpu: 0.25`` trial sets (:func:`tlsearch.search.run.gpu_memory.
   cap_gpu_memory`): does one packed trial fit its share?
3. ``ddp``: a PT job through the DDP path (:func:`tlsearch.search.run.ddp.run_ddp_pretrain`: Ray
   Train, NCCL, one GPU per worker) on up to 2 GPUs: it runs its epochs on CUDA, throughput;
4. ``packing``: 4 FT trials at ``gpu: 0.25`` vs one at ``gpu: 1`` (``tlsearch bench packing``
   with fewer runs and epochs by default), aggregate structures/s and their ratio;
5. ``precision``: a short scratch run of the paper's model on DC (``dc_trial1_800`` and its test
   set when ``../shared`` is there, else generated data) at ``train.precision`` fp32, tf32
   and bf16: training structures/s (and the ratio to fp32) and the test MAE of each.

Without Ray (a lent GPU machine holding torch and the model core only, see
``scripts/gpu_check.sh``) ``ddp`` and ``packing`` are ``skipped``, saying so; ``train`` is
skipped without alignn.

Exit status: 0 when no check failed, 1 when one did, 2 without a usable GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CHECKS = ("parity", "train", "memory", "ddp", "packing", "precision")
NO_GPU_EXIT = 2
GIB = 1024**3
PACKED_SHARE = 0.25
CUDA_WHEEL_HINT = (
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128 (a CUDA wheel)"
)


@dataclass
class CheckResult:
    """One row of the table (``numbers`` go to the JSON report)."""

    name: str
    status: str  # ok, FAILED or skipped
    result: str
    seconds: float = 0.0
    numbers: dict[str, Any] = field(default_factory=dict)


class SkipCheck(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by a check that cannot run here (the reason is its message)."""


def cuda_refusal() -> str | None:
    """Why this node cannot run the GPU check, or None when it can."""
    import torch

    if torch.version.cuda is None:
        return (
            f"torch {torch.__version__} is a CPU-only build (no CUDA): run the GPU check on a "
            f"GPU node with a CUDA build of torch ({CUDA_WHEEL_HINT})"
        )
    if not torch.cuda.is_available():
        return (
            f"no CUDA GPU visible (torch {torch.__version__}, CUDA {torch.version.cuda}): run "
            "the GPU check on a GPU node (nvidia-smi lists none, the driver is missing, or "
            "CUDA_VISIBLE_DEVICES hides them)"
        )
    return None


def device_line() -> str:
    """``GPU check on 1 x NVIDIA H200 (139.8 GiB), torch ..., CUDA ..., NCCL ...``."""
    import torch

    props = torch.cuda.get_device_properties(0)
    nccl = "none"
    if _nccl_available():
        version = torch.cuda.nccl.version()
        nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    return (
        f"GPU check on {torch.cuda.device_count()} x {props.name} "
        f"({props.total_memory / GIB:.1f} GiB), torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, NCCL {nccl}"
    )


def _nccl_available() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_nccl_available()


def check_parity(args: argparse.Namespace) -> CheckResult:
    """Fused vs reference kernels on CUDA, training and eval mode (float32)."""
    from tlsearch.model.kernel_parity import kernel_parity

    results = [kernel_parity("cuda", training) for training in (True, False)]
    numbers = {("train" if r.training else "eval"): asdict(r) for r in results}
    status = "ok" if all(r.ok for r in results) else "FAILED"
    text = "; ".join(r.describe() for r in results)
    return CheckResult("parity (fused vs reference kernels)", status, text, numbers=numbers)


def check_train(args: argparse.Namespace) -> CheckResult:
    """tlsearch vs alignn's pure model, CUDA training structures/s at each batch size."""
    try:
        import alignn.models.alignn_atomwise_pure  # noqa: F401
    except ImportError as exc:
        raise SkipCheck(f"alignn is not installed (scripts/setup.sh installs it): {exc}") from exc
    from tlsearch.bench.data import bench_records
    from tlsearch.bench.train import bench_train

    records = bench_records(args.dataset, args.data_root)
    numbers, parts = {}, []
    for batch in args.batch_sizes:
        ns = argparse.Namespace(device="cuda", batch_size=batch, steps=args.steps,
                                warmup=args.warmup, threads=args.threads,
                                heap="default")  # fmt: skip
        res = bench_train(records, ns)
        numbers[f"batch_{batch}"] = res
        parts.append(
            f"batch {batch}: {res['tlsearch_structures_per_s']:.0f} vs "
            f"{res['alignn_structures_per_s']:.0f} structures/s ({res['speedup']:.2f}x)"
        )
    return CheckResult("train (tlsearch vs alignn)", "ok", "; ".join(parts), numbers=numbers)


def check_memory(args: argparse.Namespace) -> CheckResult:
    """Peak CUDA memory of one packed-trial-sized run under a ``gpu: 0.25`` cap."""
    import torch

    from tlsearch.jobs.config import DataRef, JobConfig
    from tlsearch.jobs.run import run_job
    from tlsearch.search.run.gpu_memory import cap_gpu_memory

    total = torch.cuda.get_device_properties(0).total_memory
    job = JobConfig(
        kind="scratch",
        seed=0,
        data=DataRef(name="target", data="generated:1000:41", size=800),
        train={"epochs": args.memory_epochs, "batch_size": 16, "device": "cuda",
               "early_stopping_patience": None},
    )  # fmt: skip
    cap_gpu_memory(PACKED_SHARE)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            metrics = run_job(job, Path(tmp))
        peak = torch.cuda.max_memory_allocated()
        reserved = torch.cuda.max_memory_reserved()
    finally:
        for index in range(torch.cuda.device_count()):
            torch.cuda.set_per_process_memory_fraction(1.0, index)
        torch.cuda.empty_cache()
    share = PACKED_SHARE * total
    numbers = {"peak_allocated_gib": peak / GIB, "peak_reserved_gib": reserved / GIB,
               "share_gib": share / GIB, "device": metrics.get("device"),
               "structures_per_second": metrics.get("train_structures_per_second")}  # fmt: skip
    status = "ok" if reserved <= share else "FAILED"
    return CheckResult(
        "memory (one FT-sized trial)",
        status,
        f"peak {peak / GIB:.2f} GiB allocated, {reserved / GIB:.2f} GiB reserved, of the "
        f"{share / GIB:.1f} GiB a gpu: {PACKED_SHARE} trial may use (800 structures, batch 16, "
        f"on {metrics.get('device')})",
        numbers=numbers,
    )


def check_ddp(args: argparse.Namespace) -> CheckResult:
    """A DDP PT job on NCCL (Ray Train, one GPU per worker)."""
    import torch

    from tlsearch.jobs.config import DataRef, JobConfig
    from tlsearch.search.run.ddp import run_ddp_pretrain

    if not _nccl_available():
        raise SkipCheck("torch.distributed has no NCCL here")
    workers = min(2, torch.cuda.device_count())
    job = JobConfig(
        kind="pretrain",
        seed=0,
        data=DataRef(name="source", data="generated:600:42", test_fraction=0),
        num_workers=workers,
        cpus_per_worker=float(min(4, max(1, int(args.cpus) // (2 * workers)))),
        gpus_per_worker=1,
        train={"epochs": args.ddp_epochs, "batch_size": 64},
    )
    with tempfile.TemporaryDirectory() as tmp:
        metrics = run_ddp_pretrain(job, Path(tmp))
        wrote = (Path(tmp) / "model.pt").is_file()
    device = str(metrics.get("device"))
    fine = device.startswith("cuda") and not metrics.get("diverged") and wrote
    fine = fine and metrics.get("epochs_run") == args.ddp_epochs
    return CheckResult(
        f"ddp (NCCL, {workers} worker{'s' if workers > 1 else ''})",
        "ok" if fine else "FAILED",
        f"{metrics.get('epochs_run')} epochs on {device}, "
        f"{metrics.get('train_structures_per_second', 0):.0f} structures/s, "
        f"val MAE {metrics.get('val', {}).get('mae', float('nan')):.3g}, diverged "
        f"{metrics.get('diverged')}, model.pt {'written' if wrote else 'MISSING'}",
        numbers={k: v for k, v in metrics.items() if k not in ("scaler",)},
    )


def check_packing(args: argparse.Namespace) -> CheckResult:
    """``tlsearch bench packing``: 4 trials at gpu 0.25 vs one at gpu 1."""
    from dataclasses import replace

    from tlsearch.bench.packing import default_setup, run_packing
    from tlsearch.search.run import driver

    setup = default_setup(driver.LAST_PHASES["cluster"], 4)
    setup = replace(setup, runs=args.packing_runs, epochs=args.packing_epochs)
    with tempfile.TemporaryDirectory() as tmp:
        report = run_packing(setup, Path(tmp), address=args.address)
    alone, packed = (report["phases"][p] for p in ("alone", "packed"))
    ratio = report["ratio"]
    goal = "met" if report["goal_met"] else "NOT met"
    return CheckResult(
        "packing (4 x gpu 0.25 vs 1 x gpu 1)",
        "ok" if ratio else "FAILED",
        f"{packed['structures_per_second']:.0f} vs {alone['structures_per_second']:.0f} "
        f"structures/s: {ratio or float('nan'):.2f}x (goal 3x: {goal}); at most "
        f"{packed['peak_concurrent_runs']} at once; {setup.runs} runs x {setup.epochs} epochs",
        numbers=report,
    )


def check_precision(args: argparse.Namespace) -> CheckResult:
    """The paper's model on DC at fp32, tf32 and bf16: speed and accuracy of each."""
    from tlsearch.jobs.config import DataRef, JobConfig
    from tlsearch.jobs.run import run_job

    data, test = args.data_root / "dc" / "dc_trial1_800.json.gz", args.data_root.parent / "test"
    if data.is_file() and (test / "dc_test.json.gz").is_file():
        ref, what = DataRef(name="DC", data=str(data), test=str(test / "dc_test.json.gz")), "DC800"
    else:
        ref = DataRef(name="generated", data="generated:1000:41", size=800)
        what = "generated 800"
    numbers: dict[str, Any] = {}
    for precision in ("fp32", "tf32", "bf16"):
        train = {"epochs": args.precision_epochs, "device": "cuda", "precision": precision,
                 "early_stopping_patience": None}  # fmt: skip
        job = JobConfig(kind="scratch", seed=0, data=ref, train=train)
        with tempfile.TemporaryDirectory() as tmp:
            metrics = run_job(job, Path(tmp))
        numbers[precision] = {
            "structures_per_second": metrics["train_structures_per_second"],
            "test_mae": (metrics.get("test") or {}).get("mae"),
            "precision": metrics.get("precision"),
        }
    base = numbers["fp32"]["structures_per_second"]
    parts = [
        f"{name} {n['structures_per_second']:.0f} structures/s "
        f"({n['structures_per_second'] / base:.2f}x), test MAE {n['test_mae']:.4g}"
        for name, n in numbers.items()
    ]
    label = f"precision ({what}, {args.precision_epochs} epochs)"
    return CheckResult(label, "ok", "; ".join(parts), numbers=numbers)


CHECK_FUNCTIONS: dict[str, Callable[[argparse.Namespace], CheckResult]] = {
    "parity": check_parity,
    "train": check_train,
    "memory": check_memory,
    "ddp": check_ddp,
    "packing": check_packing,
    "precision": check_precision,
}


def run_checks(
    names: Sequence[str],
    args: argparse.Namespace,
    functions: dict[str, Callable[[argparse.Namespace], CheckResult]] | None = None,
) -> list[CheckResult]:
    """Run each check; an exception is that check's ``FAILED`` row, not the end of the run."""
    functions = functions or CHECK_FUNCTIONS
    results = []
    for name in names:
        logger.info("GPU check: %s", name)
        start = time.perf_counter()
        try:
            result = functions[name](args)
        except SkipCheck as exc:
            result = CheckResult(name, "skipped", str(exc))
        except Exception as exc:
            logger.error("GPU check %s failed:\n%s", name, traceback.format_exc())
            text = " ".join(f"{type(exc).__name__}: {exc}".split())
            result = CheckResult(name, "FAILED", text[:400])
        result.seconds = time.perf_counter() - start
        results.append(result)
    return results


def format_table(header: str, results: Sequence[CheckResult]) -> str:
    """The header line and one table row per check."""
    from tabulate import tabulate

    rows = [(r.name, r.status, f"{r.seconds:.0f}", r.result) for r in results]
    table = tabulate(rows, headers=("check", "status", "s", "result"), tablefmt="simple",
                     maxcolwidths=[None, None, None, 90])  # fmt: skip
    return f"{header}\n{table}\n"


def _ray_missing() -> str | None:
    """Why Ray cannot be imported here (None when it can)."""
    import importlib.util

    return None if importlib.util.find_spec("ray") else "no module named 'ray'"


def _skip(reason: str) -> Callable[[argparse.Namespace], CheckResult]:
    def skipped(args: argparse.Namespace) -> CheckResult:
        raise SkipCheck(reason)

    return skipped


def exit_status(results: Sequence[CheckResult]) -> int:
    """1 when a check failed, else 0."""
    return int(any(r.status == "FAILED" for r in results))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlsearch bench gpu",
        description="The GPU check: fused vs reference kernels on CUDA, CUDA training "
        "throughput vs alignn, peak memory of a "
        "gpu: 0.25 trial, the DDP path on NCCL, 4 trials at gpu 0.25 vs one at gpu 1, "
        "fp32/tf32/bf16 on DC; one table. Exits 2 with one line on a node without a usable "
        "CUDA GPU.",
    )
    arg = p.add_argument
    arg("--only", nargs="+", choices=CHECKS, default=list(CHECKS), help="checks to run")
    arg("--dataset", default="generated", help="train check: a paper code (dc, bg) or generated")
    arg("--data-root", type=Path, default=Path("..") / "shared" / "data" / "paper" / "ft")
    arg("--batch-sizes", type=int, nargs="+", default=[16, 64])
    arg("--steps", type=int, default=20, help="train check: timed steps per model")
    arg("--warmup", type=int, default=3)
    arg("--threads", type=int, default=4, help="torch CPU threads")
    arg("--memory-epochs", type=int, default=2)
    arg("--ddp-epochs", type=int, default=2)
    arg("--packing-runs", type=int, default=4, help="FT runs per packing phase")
    arg("--packing-epochs", type=int, default=3)
    arg("--precision-epochs", type=int, default=20, help="precision check: epochs per run")
    arg("--address", help="Ray cluster for ddp and packing (default: a local Ray)")
    arg("--json", type=Path, help="also write every number here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the GPU check; print the table; the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    refusal = cuda_refusal()
    if refusal:
        sys.stdout.write(f"tlsearch bench gpu: {refusal}\n")
        return NO_GPU_EXIT
    import os

    args.cpus = float(os.cpu_count() or 1)
    header = device_line()
    own_ray = False
    needs_ray = {"ddp", "packing"} & set(args.only)
    functions = dict(CHECK_FUNCTIONS)
    if needs_ray and _ray_missing():
        for name in needs_ray:  # a lent GPU machine: torch and our core only
            functions[name] = _skip(f"Ray is not installed here ({_ray_missing()})")
    elif needs_ray:
        import ray

        from tlsearch.search.run import driver

        own_ray = not ray.is_initialized()
        driver.connect(args.address)
    try:
        results = run_checks(args.only, args, functions)
    finally:
        if own_ray:
            import ray

            ray.shutdown()
    if args.json:
        report = {"device": header, "checks": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    sys.stdout.write(format_table(header, results))
    return exit_status(results)


if __name__ == "__main__":  # scripts/gpu_check.sh, also where tlsearch.cli cannot import
    sys.exit(main())
