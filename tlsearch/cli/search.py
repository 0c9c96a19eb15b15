"""``tlsearch search`` and ``tlsearch runs``: parsers and handlers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tlsearch.cli.common import EXIT_INTERRUPTED, run_handler
from tlsearch.logutil import add_verbosity_flags, setup_logging

#: The search ran to its end but planned seed-runs have no row (or rows are duplicated).
EXIT_INCOMPLETE = 3


def add_parsers(subparsers: Any) -> None:
    """Register ``search`` and ``runs`` on the main parser's subparsers."""
    add_search_parser(subparsers)
    add_runs_parser(subparsers)


def add_search_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``search SPEC.yaml [--address A] [--storage URI] [--resume] [--smoke]``."""
    p = subparsers.add_parser(
        "search",
        help="run a transfer-learning search (search_spaces/*.yaml) on Ray",
        description="Compile SPEC.yaml into Tune experiments and run them: PT jobs first "
        "(each once, cached under <storage>/pretrained; in a grid search they are the first "
        "trials of its experiment and fine-tuning trials wait for theirs), then every "
        "configuration with all its seeds (a grid: one trial per seed-run). Each seed-run "
        "writes one Parquet row "
        "under <storage>/<name>/runs/. Without --address a local Ray is started (its "
        "dashboard URL is logged). Stopped searches "
        "continue with --resume; recorded seed-runs are never run again. Exit status: 0 when "
        "every planned seed-run has a row (ok, failed, diverged or skipped), 3 when some have "
        "none at the end (reason on the last line), 130 when interrupted, 2 for bad input.",
    )
    p.add_argument("spec", type=Path, metavar="SPEC.yaml", help="search spec (search_spaces/)")
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join: 'auto' (this node's cluster) or ray://host:10001; "
        "default: start a local Ray",
    )
    p.add_argument(
        "--storage",
        metavar="URI",
        help="override the spec's storage: a folder (NFS on clusters), s3://... or gs://...",
    )
    p.add_argument("--name", help="override the spec's search name")
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set one of the spec's vars (repeatable), e.g. --var paper=/data/paper where the "
        "paper's files are mounted elsewhere than vars.paper says (relative paths: against the "
        "current directory)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted search (Tuner.restore; errored trials rerun); refused "
        "when the spec or its data files changed since the search started (the difference is "
        "shown)",
    )
    p.add_argument(
        "--allow-changed-spec",
        action="store_true",
        help="with --resume: continue even though the spec or its data changed (finished "
        "trials keep their rows; the others run with the new spec); configurations of a "
        "started experiment cannot change",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny version (1 seed, 2 epochs, tiny model, first values of each axis) "
        "named <name>-smoke",
    )
    p.add_argument(
        "--rehearse",
        action="store_true",
        help="run the whole plan (every dataset, size, strategy, sampling, lr, seed, MPT corpus, "
        "DDP worker count, on the same files and batch sizes) with a 1+1-layer 16-wide model, "
        "2 epochs, no GPU, as <name>-rehearsal; rows are marked and never mixed with real "
        "results; ends with planned vs completed and the time per seed-run",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="no downloads: matminer:CODE datasets read the paper's files under vars.paper "
        "(FT targets: its trial files and test sets, BG/FE with a stand-in test set; PT pools: "
        "the union of a dataset's files, BG/FE pt/*_1000); jarvis:dft_2d reads vars.dft_2d "
        "(a rehearsal without it uses a generated stand-in); see search_spaces/README.md",
    )
    p.add_argument(
        "--seeds", type=int, metavar="N", help="run only the spec's first N seeds (e.g. 1)"
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        help="override max_concurrent (trials at once; default: no limit for grids, the "
        "cluster's trial slots for Optuna experiments, so that TPE sees results between waves)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard logs of every trial under <storage>/<name>/tune/ "
        "(the spec's tensorboard: true; needs tensorboardX)",
    )
    p.add_argument(
        "--no-plot",
        action="store_true",
        help="skip <search>/test_mae.png at the end (local storage only)",
    )
    p.add_argument(
        "--mlflow",
        nargs="?",
        const="default",
        metavar="URI",
        help="log the search to MLflow as a parent run, each seed-run and PT job as a child "
        "run (configuration, metrics, per-epoch history, model file); URI: a tracking server or "
        "store, default a SQLite store in the search folder (sqlite:///<storage>/<name>/mlflow.db)",
    )
    p.add_argument(
        "--wandb",
        metavar="PROJECT",
        help="log every Tune trial to Weights & Biases project PROJECT (Ray's "
        "WandbLoggerCallback; needs wandb; WANDB_MODE=offline keeps the runs local)",
    )
    add_verbosity_flags(p)
    p.set_defaults(handler=cmd_search)
    return p


def add_runs_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``runs RESULTS_DIR [--json]``."""
    p = subparsers.add_parser(
        "runs",
        help="what a search ran, failed and has left",
        description="Read <storage>/<name>/plan.json and runs/*.parquet and print planned, "
        "completed, failed, diverged and remaining seed-runs, PT jobs, and one line per "
        "configuration (mean test metrics over its completed seeds).",
    )
    p.add_argument(
        "results_dir",
        metavar="RESULTS_DIR",
        help="the search folder <storage>/<name> (or its runs/ folder; URIs work)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--max-rows", type=int, default=200, metavar="N", help="table rows shown")
    add_verbosity_flags(p)
    p.set_defaults(handler=cmd_runs)
    return p


def cmd_search(args: argparse.Namespace) -> int:
    """``tlsearch search`` (the same calls as ``tlsearch.run_search()``)."""
    # pandas, pyarrow and the search's pydantic models (~0.7 s): loaded by the command, not by
    # ``tlsearch --help``; Ray itself is imported further down, when the search starts.
    from tlsearch.search.plan.prepare import prepare_spec
    from tlsearch.search.plan.rehearse import rehearsal_report
    from tlsearch.search.run.driver import SearchInterruptedError
    from tlsearch.search.run.session import run_owning_ray
    from tlsearch.search.watch.console import command_monitor
    from tlsearch.search.watch.quickplot import plot_test_mae
    from tlsearch.search.watch.status import format_status
    from tlsearch.storage.uri import is_remote

    overrides = {
        "storage": args.storage,
        "name": args.name,
        "max_concurrent": args.max_concurrent,
        "tensorboard": args.tensorboard or None,
    }
    spec = prepare_spec(
        args.spec, overrides, smoke=args.smoke, rehearse=args.rehearse, offline=args.offline,
        seeds=args.seeds, variables=parse_vars(args.var),
    )  # fmt: skip
    verbosity = getattr(args, "verbose_sub", 0) - getattr(args, "quiet_sub", 0)
    monitor = command_monitor(spec, verbosity, args.mlflow, args.wandb)
    try:
        with monitor:  # the progress display ends before the table (or the error)
            status, stopping = run_owning_ray(
                spec,
                background_stop=True,
                address=args.address,
                resume=args.resume,
                verbose=min(max(verbosity + 1, 0), 2),
                allow_changed_spec=args.allow_changed_spec,
                monitor=monitor,
            )
    except SearchInterruptedError as exc:  # Ray is stopped: this is the last line
        sys.stderr.write(f"tlsearch: interrupted: {exc}\n")
        return EXIT_INTERRUPTED
    try:
        sys.stdout.write(format_status(status) + "\n")
        if spec.rehearsal:
            sys.stdout.write(rehearsal_report(status) + "\n")
        if not args.no_plot and not is_remote(status.search_dir) and status.completed:
            sys.stdout.write(f"plot: {plot_test_mae(status.search_dir)}\n")
    finally:
        if stopping is not None:
            stopping.join()
    return _exit_status(status)


def parse_vars(items: Sequence[str]) -> dict[str, str]:
    """``--var NAME=VALUE`` switches as a mapping (a malformed one is refused)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--var {item!r}: expected NAME=VALUE, e.g. --var paper=/data/paper")
        out[name.strip()] = value
    return out


def _exit_status(status: Any) -> int:
    """0 when every planned seed-run has a row (ok, failed, diverged or skipped: the search's
    failure policy), else :data:`EXIT_INCOMPLETE` with the reason as the last line on stderr."""
    problem = incomplete_reason(status)
    if problem is None:
        return 0
    sys.stdout.flush()
    sys.stderr.write(f"tlsearch: search incomplete: {problem}\n")
    return EXIT_INCOMPLETE


def incomplete_reason(status: Any) -> str | None:
    """Why a search that ran to its end is not complete (None when it is)."""
    if status.duplicates:
        return f"{status.duplicates} duplicate run_id row(s) in {status.search_dir}/runs"
    if status.planned is None:
        return f"no plan.json in {status.search_dir}"
    if status.remaining:
        return (
            f"{status.remaining} of {status.planned} planned seed-run(s) have no row (their "
            "trials errored after every retry, see the log above); --resume runs them again"
        )
    return None


def cmd_runs(args: argparse.Namespace) -> int:
    """``tlsearch runs``."""
    # pandas and pyarrow (~0.5 s): loaded by the command, not by ``tlsearch --help``.
    from tlsearch.search.watch.status import format_status, search_status

    status = search_status(args.results_dir)
    if args.json:
        sys.stdout.write(json.dumps(status.as_dict(), indent=2, default=str) + "\n")
    else:
        sys.stdout.write(format_status(status, args.max_rows) + "\n")
    return 0


def search_command(argv: Sequence[str]) -> int:
    """``tlsearch search ARGV...`` (or ``runs``) in this process, without the other commands'
    parsers: what ``tlsearch bench search`` runs and measures. Returns the exit code."""
    parser = argparse.ArgumentParser(prog="tlsearch")
    add_parsers(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    setup_logging(args.verbose_sub - args.quiet_sub)
    return run_handler(args)
