"""Graph cache at the scale of the FE corpus: build time, cache size, peak memory, hit time.

    python bench/graph_cache_scale.py [--n 132752] [--cache-dir DIR] [--workers 2]

Generates ``n`` structures of 20-40 atoms (numpy only), builds their graphs into a fresh cache
(streamed to disk), then opens the cache again (the hit path every later run takes), and
estimates what storing line graphs would cost instead of rebuilding them per batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from tlsearch.graphs.store import build_graph_store
from tlsearch.structures.generate import generate_arrays

logger = logging.getLogger("bench.graph_cache_scale")


class TreeRssSampler(threading.Thread):
    """Peak total RSS of this process and all its descendants (workers included), from /proc."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak_gb, self._stop_event = interval, 0.0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_gb = max(self.peak_gb, _tree_rss_gb(os.getpid()))
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_gb


def _tree_rss_gb(root: int) -> float:
    parents, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid], rss[pid] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += [child for child, parent in parents.items() if parent == pid]
    return total / 1024**3


def _peak_rss_gb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return own, children


def _dir_size_gb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024**3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=132_752)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the cache afterwards")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="tlsearch-scale-"))

    t0 = time.perf_counter()
    records = list(generate_arrays(args.n, seed=0))
    t_gen = time.perf_counter() - t0
    atoms = np.array([r.num_atoms for r in records])
    rss_records, _ = _peak_rss_gb()

    sampler = TreeRssSampler()
    sampler.start()
    t0 = time.perf_counter()
    store = build_graph_store(records, cache_dir=cache, progress=True, workers=args.workers)
    t_build = time.perf_counter() - t0
    tree_peak = sampler.stop()
    own, _ = _peak_rss_gb()

    t0 = time.perf_counter()
    again = build_graph_store(records, cache_dir=cache, progress=False)
    t_hit = time.perf_counter() - t0

    # line graph size if it were stored: sum over structures of sum_v indeg(v) * outdeg(v)
    sample = np.random.default_rng(0).choice(len(again), size=min(2000, len(again)), replace=False)
    triplets = []
    for i in sample:
        _, edges, _ = again.graph(int(i))
        n = int(edges.max()) + 1
        deg_out = np.bincount(edges[:, 0], minlength=n)
        deg_in = np.bincount(edges[:, 1], minlength=n)
        triplets.append(int((deg_in * deg_out).sum()))
    lg_bytes = np.mean(triplets) * len(again) * (2 * 4 + 4)  # two int32 indices + f32 cosine

    starts = range(0, min(64 * 50, len(again) - 64), 64)
    t0 = time.perf_counter()
    for start in starts:
        again.collate(range(start, start + 64))
    t_collate = (time.perf_counter() - t0) / len(starts)

    report = {
        "structures": len(records),
        "mean_atoms": float(atoms.mean()),
        "graphs": len(store),
        "rejected": len(store.rejected),
        "generate_s": round(t_gen, 1),
        "build_s": round(t_build, 1),
        "build_structures_per_s": round(len(records) / t_build, 1),
        "cache_gb": round(_dir_size_gb(store.path), 3),
        "peak_rss_main_gb_after_records": round(rss_records, 2),
        "peak_rss_main_gb": round(own, 2),
        "peak_rss_process_tree_gb_during_build": round(tree_peak, 2),
        "cache_hit": again.cache_hit,
        "hit_open_s": round(t_hit, 2),
        "mean_triplets_per_structure": round(float(np.mean(triplets)), 1),
        "stored_line_graph_gb_estimate": round(lg_bytes / 1024**3, 2),
        "collate_batch64_with_line_graph_ms": round(t_collate * 1e3, 1),
    }
    print(json.dumps(report, indent=2))  # noqa: T201 - a benchmark's report
    if not args.keep and args.cache_dir is None:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
