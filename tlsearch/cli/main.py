"""The ``tlsearch`` command's entry point: the parser assembled from the command groups, logging,
and the dispatch to each command's handler (every subparser sets ``handler``).

Bad input (missing files, invalid configs, unusable data) ends with one ``tlsearch: error: ...``
line on stderr and exit code 2; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tlsearch.cli import analysis, bench, search, train, transfer
from tlsearch.cli.common import EXIT_INTERRUPTED, run_handler
from tlsearch.logutil import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="tlsearch",
        description="Train, evaluate and apply ALIGNN models for material properties.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="warnings only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train.add_parsers(sub)  # train, predict, demo
    bench.add_parser(sub)
    transfer.add_parsers(sub)  # pretrain, finetune, mpt, rank-sources
    search.add_parsers(sub)  # search, runs
    analysis.add_parsers(sub)  # analyze, best-pair, compare-paper
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tlsearch`` console script; returns the exit code."""
    # OpenMP threads that spin at barriers stall badly when cores are shared (measured: a
    # layer 3x slower); passive waiting must be chosen before torch starts its thread pool.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = [*extra, *args.bench_args]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    verbosity = (
        args.verbose + getattr(args, "verbose_sub", 0) - args.quiet - getattr(args, "quiet_sub", 0)
    )
    setup_logging(verbosity)
    try:
        return run_handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("tlsearch: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
