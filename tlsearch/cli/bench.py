"""``tlsearch bench``: the passthrough parser and the benchmarks' dispatcher.

The benchmarks themselves live in :mod:`tlsearch.bench` (one module per sub-benchmark, each with
its own options); ``tlsearch bench graphs|train`` runs :mod:`tlsearch.bench.graphs` and
:mod:`tlsearch.bench.train` with the options of :func:`bench_parser`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from tlsearch.bench import search as bench_search
from tlsearch.bench.options import add_train_options
from tlsearch.cli.search import search_command

logger = logging.getLogger("tlsearch.bench")


def add_parser(sub: Any) -> None:
    """Register ``bench`` (its arguments are passed through to :func:`run_bench`)."""
    bench = sub.add_parser(
        "bench",
        help="benchmarks (tlsearch.bench); arguments are passed through",
        description="Run the benchmarks of tlsearch.bench with the remaining arguments; "
        "'tlsearch bench --help' shows their options.",
        add_help=False,
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for tlsearch.bench")
    bench.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """``tlsearch bench``: hand the remaining arguments to :func:`run_bench`."""
    return run_bench(list(args.bench_args))


def bench_parser() -> argparse.ArgumentParser:
    """Options of ``tlsearch bench [graphs] [train]``."""
    p = argparse.ArgumentParser(
        prog="tlsearch bench",
        description="Benchmarks against the alignn package (ratios printed; see module docs).",
    )
    p.add_argument(
        "which",
        nargs="*",
        choices=["graphs", "train", "search", "packing", "gpu", []],
        default=[],
        help="sub-benchmarks to run (default: graphs and train); 'search [SPEC] [--storage DIR]', "
        "'packing', 'gpu', 'frozen', 'rank-sources' and 'kernels' run alone with their own "
        "options (tlsearch bench search --help, tlsearch bench kernels --help, ...)",
    )
    add_train_options(p, warmup=2)
    p.add_argument("--n-graphs", type=int, default=200, help="structures for the graph bench")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def run_bench(argv: list[str]) -> int:
    """Run the selected benchmarks, log a table and return the exit code."""
    if argv and argv[0] == "search":
        return bench_search.main(argv[1:], search_command=search_command)
    # The sub-benchmarks that run alone, each with its own options; imported on use (torch,
    # Ray or alignn at import time).
    if argv and argv[0] == "packing":
        from tlsearch.bench.packing import main as packing_main

        return packing_main(argv[1:])
    if argv and argv[0] == "gpu":
        from tlsearch.bench.gpu import main as gpu_main

        return gpu_main(argv[1:])
    if argv and argv[0] == "rank-sources":
        from tlsearch.bench.rank import main as rank_main

        return rank_main(argv[1:])
    if argv and argv[0] == "kernels":
        from tlsearch.bench.kernels import main as kernels_main

        return kernels_main(argv[1:])
    if argv and argv[0] == "frozen":
        from tlsearch.bench.frozen import main as frozen_main

        return frozen_main(argv[1:])
    args = bench_parser().parse_args(argv)
    if {"search", "packing", "gpu"} & set(args.which):
        raise SystemExit(
            "tlsearch bench: 'search', 'packing' and 'gpu' run alone: tlsearch bench search "
            "[SPEC], tlsearch bench packing, tlsearch bench gpu"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    which = args.which or ["graphs", "train"]
    # The structure loaders (tlsearch.structures and its readers): only these benchmarks read
    # data, so ``tlsearch --help`` does not load them.
    from tlsearch.bench.data import bench_records

    results: dict[str, dict] = {}
    for code in args.datasets:
        records = bench_records(code, args.data_root)
        if "graphs" in which:
            # alignn and jarvis (the peer's graph builder): imported only by this benchmark.
            from tlsearch.bench.graphs import bench_graphs

            results.setdefault(code, {})["graphs"] = bench_graphs(records[: args.n_graphs])
        if "train" in which:
            # torch and alignn's model (seconds to import): only by this benchmark.
            from tlsearch.bench.train import bench_train

            results.setdefault(code, {})["train"] = bench_train(records, args)
    logger.info("%s", json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
