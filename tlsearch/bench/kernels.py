"""``tlsearch bench kernels``: the training bench under other instruction sets and kernel constants.

Why: the DC speed-up over alignn measured 1.73x on an Intel Xeon (AVX-512) and 1.37x on an AMD
EPYC (AVX2 only). This bench answers, on one machine, whether the gap comes from the instruction
set or from the CPU kernels' constants (:data:`tlsearch.model.kernels.bn_silu.CHUNK_ELEMENTS`,
the rows of one chunk workspace, and :data:`~tlsearch.model.kernels.bn_silu.SERIAL_ELEMENTS`,
below which elementwise ops run on one thread) being tuned to one CPU.

Each (instruction set, constants) pair is one ``tlsearch bench train`` (ours vs alignn's
pure-PyTorch ALIGNN, interleaved on the same batches) in its own process, because the instruction
set is chosen when torch loads: ``avx2`` sets ``ATEN_CPU_CAPABILITY=avx2`` (ATen's vector
kernels), ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (MKL's GEMM) and ``ONEDNN_MAX_CPU_ISA=AVX2``, as on an
AVX2-only CPU, and builds tlsearch's native CPU loops with ``-march=haswell``; ``native``
leaves them unset. An instruction set can only be lowered, and each row names the one torch
really used and the flags of the loops. ``--loops torch`` runs the same kernels as torch ops
(``TLSEARCH_NATIVE=0``), once per instruction set. The constants vary one at a time around the
defaults, with the native loops.
Read the ratio to alignn (robust to load: the same batches back to back), not absolute speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tlsearch.bench.options import add_train_options

logger = logging.getLogger(__name__)

#: Environment of each instruction set (``None``: the variable is removed).
ISA_ENV: dict[str, dict[str, str | None]] = {
    "native": {
        "ATEN_CPU_CAPABILITY": None,
        "MKL_ENABLE_INSTRUCTIONS": None,
        "ONEDNN_MAX_CPU_ISA": None,
        "TLSEARCH_NATIVE_ARCH": None,
    },
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "TLSEARCH_NATIVE_ARCH": "haswell",
    },
    "avx512": {
        "ATEN_CPU_CAPABILITY": "avx512",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "TLSEARCH_NATIVE_ARCH": "skylake-avx512",
    },
}

#: ``TLSEARCH_NATIVE`` of each choice of ``--loops``: the native loops, or the torch ops.
LOOPS_ENV = {"native": "1", "torch": "0"}


def settings(chunks: Sequence[int], serials: Sequence[int]) -> list[tuple[int, int]]:
    """(chunk log2, one-thread log2) pairs: the defaults, then each constant varied alone."""
    from tlsearch.model.kernels import bn_silu

    chunk0 = bn_silu.CHUNK_ELEMENTS.bit_length() - 1
    serial0 = bn_silu.SERIAL_ELEMENTS.bit_length() - 1
    pairs = [(chunk0, serial0)]
    pairs += [(c, serial0) for c in chunks if c != chunk0]
    pairs += [(chunk0, s) for s in serials if s != serial0]
    return pairs


def isa_environment(
    isa: str, base: dict[str, str] | None = None, loops: str = "native"
) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with ``isa``'s variables set or removed, and
    the native CPU loops on or off (``loops``)."""
    env = dict(os.environ if base is None else base)
    env["TLSEARCH_NATIVE"] = LOOPS_ENV[loops]
    for name, value in ISA_ENV[isa].items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlsearch bench kernels",
        description="bench train per instruction set and kernel constants, one process each",
    )
    p.add_argument("--isa", nargs="+", choices=sorted(ISA_ENV), default=["native", "avx2"])
    p.add_argument(
        "--loops",
        nargs="+",
        choices=sorted(LOOPS_ENV),
        default=["native", "torch"],
        help="the native CPU loops (built for the instruction set), or the torch ops",
    )
    p.add_argument(
        "--chunk-log2",
        nargs="*",
        type=int,
        default=[19, 23],
        metavar="K",
        help="chunk workspaces of 2**K elements to try besides the default",
    )
    p.add_argument(
        "--serial-log2",
        nargs="*",
        type=int,
        default=[18, 22],
        metavar="K",
        help="one-thread bounds of 2**K elements to try besides the default",
    )
    add_train_options(p, warmup=1)
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--one", nargs=2, type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def _bench_args(args: argparse.Namespace) -> list[str]:
    argv = ["--datasets", *args.datasets, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    argv += ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    argv += ["--heap", args.heap]
    return argv + ["--data-root", str(args.data_root)]


def run_one(args: argparse.Namespace) -> list[dict[str, Any]]:
    """In this process: patch the constants, run bench train on each dataset (the child side)."""
    import torch

    from tlsearch.bench.data import bench_records
    from tlsearch.bench.train import bench_train
    from tlsearch.model.kernels import bn_silu, edge_gated, native

    chunk, serial = args.one
    bn_silu.CHUNK_ELEMENTS = edge_gated.CHUNK_ELEMENTS = 1 << chunk
    bn_silu.SERIAL_ELEMENTS = 1 << serial
    bench = argparse.Namespace(
        steps=args.steps,
        warmup=args.warmup,
        batch_size=args.batch_size,
        threads=args.threads,
        device="cpu",
        heap=args.heap,
    )
    rows = []
    for code in args.datasets:
        result = bench_train(bench_records(code, args.data_root), bench)
        rows.append(
            {
                "dataset": code,
                "chunk_log2": chunk,
                "serial_log2": serial,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "native_loops": native.built_with if native.library() is not None else None,
                **{
                    k: result[k]
                    for k in (
                        "speedup",
                        "speedup_median_per_step",
                        "tlsearch_structures_per_s",
                        "alignn_structures_per_s",
                        "tlsearch_fraction_of_roofline",
                        "matmul_roofline_gflops",
                        "memory_bandwidth_gbs",
                        "machine_balance_flop_per_byte",
                    )
                },
            }
        )
    return rows


def _children(args: argparse.Namespace) -> Iterator[list[dict[str, Any]]]:
    pairs = settings(args.chunk_log2, args.serial_log2)
    with tempfile.TemporaryDirectory(prefix="tlsearch-bench-kernels-") as tmp:
        for isa, loops in ((i, lo) for i in args.isa for lo in args.loops):
            # the torch ops run once per ISA, with the default constants
            for k, (chunk, serial) in enumerate(pairs if loops == "native" else pairs[:1]):
                out = Path(tmp) / f"{isa}-{loops}-{k}.json"
                cmd = [
                    sys.executable,
                    "-m",
                    "tlsearch.bench.kernels",
                    "--one",
                    str(chunk),
                    str(serial),
                    "--out",
                    str(out),
                    *_bench_args(args),
                ]
                env = isa_environment(isa, loops=loops)
                done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(
                        f"bench kernels ({isa}, {loops} loops, 2**{chunk}, 2**{serial}) failed:\n"
                        + done.stderr[-2000:]
                    )
                rows = json.loads(out.read_text())
                yield [{"isa": isa, "loops": loops, "default": k == 0, **row} for row in rows]


def _log_row(row: dict[str, Any]) -> None:
    logger.info(
        "%-6s (%-7s) %-6s loops %-4s chunk 2^%d, one thread <= 2^%d: ratio %.2fx (median per "
        "step %.2fx), %.0f%% of %.0f GFLOP/s (memory %.1f GB/s: %.1f FLOP/byte)",
        row["isa"],
        row["cpu_capability"],
        row["loops"],
        row["dataset"],
        row["chunk_log2"],
        row["serial_log2"],
        row["speedup"],
        row["speedup_median_per_step"],
        100 * row["tlsearch_fraction_of_roofline"],
        row["matmul_roofline_gflops"],
        row["memory_bandwidth_gbs"],
        row["machine_balance_flop_per_byte"],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every (instruction set, constants) pair in its own process; log a line per row."""
    args = _parser().parse_args(argv)
    if args.one is not None:  # the child: one setting, rows to --out
        args.out.write_text(json.dumps(run_one(args)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    rows: list[dict[str, Any]] = []
    for child_rows in _children(args):
        for row in child_rows:
            _log_row(row)
        rows += child_rows
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
