"""``tlsearch bench``: this project against its peer (the alignn package), in one run.

Sub-benchmarks (all by default):
- ``graphs``: graph construction structures/s, tlsearch vs alignn's k-nearest builder, with
  an edge-for-edge identity check on the same structures;
- ``train``: training structures/s (forward + backward + AdamW step, batch 16, the paper's model
  size) vs alignn's pure-PyTorch ``ALIGNNAtomWisePure`` at the same widths/depths on the same
  batches (line graph precomputed for both), and achieved GFLOP/s against a matmul roofline
  measured in the same run.
- ``search [SPEC] [--storage DIR]`` (run alone, not by default): a whole search
  (``search_spaces/quickstart.yaml`` by default) in a fresh storage folder: wall time vs training
  time, graph-cache hits, PT jobs run vs requested (:mod:`tlsearch.bench.search`).
- ``packing [--per-device K]`` (run alone, not by default): N fine-tuning runs K per device
  (``gpu: 1/K`` each) vs one at a time, aggregate structures/s (:mod:`tlsearch.bench.packing`).
- ``gpu`` (run alone, not by default; ``scripts/gpu_check.sh``): the GPU check of a CUDA node,
  one table: training throughput vs alignn on CUDA, peak memory of a ``gpu: 0.25`` trial, the
  DDP path on NCCL, packing 4 trials per GPU; exits 2 with one line on a CPU-only node
  (:mod:`tlsearch.bench.gpu`).
- ``frozen [--epochs N] [--size N]`` (run alone, not by default): FT seed-runs of the head-only
  strategies with the frozen trunk computed once (cached features) vs every epoch, wall time
  and ratios (:mod:`tlsearch.bench.frozen`).
- ``rank-sources RESULTS`` (run alone): ``tlsearch rank-sources`` against what a finished search
  fine-tuned: Spearman, best source in the top 2, ranking vs fine-tuning seconds
  (:mod:`tlsearch.bench.rank`).
- ``kernels [--isa native avx2] [--loops native torch]`` (run alone): ``train`` once per
  instruction set (AVX2 forced through torch's, MKL's and oneDNN's switches, and the native CPU
  loops built for AVX2), with the native loops on and off, and per value of the CPU kernels'
  constants, each in its own process: is a slower speed-up the instruction set or constants
  tuned to one CPU, and what do the fused loops give?
  (:mod:`tlsearch.bench.kernels`).

Ratios are what to read; absolute times on shared machines are noise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_DATA = Path("..") / "shared" / "data" / "paper" / "ft"


def add_train_options(p: argparse.ArgumentParser, warmup: int) -> None:
    """The training bench's options (shared with ``tlsearch bench kernels``)."""
    p.add_argument(
        "--datasets",
        nargs="+",
        default=["dc", "bg"],
        help="paper dataset codes whose <code>_trial1_800 files are used "
        "(DC: small cells, BG: large cells); 'generated' uses generated data",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA,
        help="folder holding <code>/<code>_trial1_800.json.gz (default ../shared/...)",
    )
    p.add_argument("--steps", type=int, default=8, help="timed training steps per model")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed training steps per model")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--heap",
        choices=["retained", "default"],
        default="retained",
        help="glibc heap while both models train: 'retained' keeps freed memory in the process "
        "as tlsearch's training loop does (tlsearch.training.heap), 'default' is glibc's",
    )


def _parser() -> argparse.ArgumentParser:
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


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks, log a table and return 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "search":
        from tlsearch.bench.search import main as search_main

        return search_main(argv[1:])
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
    args = _parser().parse_args(argv)
    if {"search", "packing", "gpu"} & set(args.which):
        raise SystemExit(
            "tlsearch bench: 'search', 'packing' and 'gpu' run alone: tlsearch bench search "
            "[SPEC], tlsearch bench packing, tlsearch bench gpu"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    which = args.which or ["graphs", "train"]
    from tlsearch.bench.data import bench_records

    results: dict[str, dict] = {}
    for code in args.datasets:
        records = bench_records(code, args.data_root)
        if "graphs" in which:
            from tlsearch.bench.graphs import bench_graphs

            results.setdefault(code, {})["graphs"] = bench_graphs(records[: args.n_graphs])
        if "train" in which:
            from tlsearch.bench.train import bench_train

            results.setdefault(code, {})["train"] = bench_train(records, args)
    logger.info("%s", json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
