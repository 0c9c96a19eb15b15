"""Training throughput: tlsearch's ALIGNN vs alignn's pure-PyTorch ALIGNN, same batches.

Both models get the paper's widths and depths (4 ALIGNN + 4 GCN layers, hidden 256, embedding
64, RBF 80/40) and the same precomputed graphs and line graphs; steps are interleaved (ours,
theirs, ours, ...) so machine noise hits both alike. Each model steps with the optimizer its
own training code builds: ours :func:`tlsearch.training.optim.build_optimizer` (AdamW, fused
kernel), alignn's ``alignn.utils.setup_optimizer(group_decay(model))`` (AdamW, PyTorch's
default per-tensor loop), both at the paper's lr 1e-3 and weight decay 1e-5. The step is timed
in two parts, so the report also gives the model-only ratio (forward + backward, the same work
on both sides). GFLOP/s counts the dense layers' matmul FLOPs (forward x 3 for forward +
backward) against a plain matmul measured in the same run. Both models train under one glibc
heap setting (``--heap``): by default the retained heap of tlsearch's training loop
(:mod:`tlsearch.training.heap`), which speeds alignn's steps up too (BG: ~1.5x), so the ratio
compares the implementations; ``--heap default`` runs both on glibc's defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time

import numpy as np
import torch

from tlsearch.graphs.batch import GraphBatch
from tlsearch.graphs.store import build_graph_store
from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import ALIGNNConfig
from tlsearch.model.peer import alignn_graphs, alignn_pure_model
from tlsearch.structures.records import StructureRecord
from tlsearch.training.heap import retained_heap

logger = logging.getLogger(__name__)

HIDDEN, EMBED, EDGE_BINS, ANGLE_BINS, ATOM_IN, LAYERS = 256, 64, 80, 40, 92, 4


def model_flops(n: int, e: int, t: int) -> float:
    """Forward matmul FLOPs of the paper's ALIGNN on a batch with n atoms, e bonds, t triplets."""
    h = HIDDEN
    embed = (
        n * ATOM_IN * h + e * (EDGE_BINS * EMBED + EMBED * h) + t * (ANGLE_BINS * EMBED + EMBED * h)
    )
    # edge-gated conv: 4 node-side linears (src/dst gate, src/dst update) + 1 edge-side linear
    conv_g = (4 * n + e) * h * h
    conv_lg = (4 * e + t) * h * h
    layers = LAYERS * (conv_g + conv_lg) + LAYERS * conv_g
    return 2.0 * (embed + layers)


def matmul_roofline(device: str, seconds: float = 1.0) -> float:
    """GFLOP/s of a plain float32 (8192 x 256) @ (256 x 256) matmul on this device/threads."""
    a = torch.randn(8192, HIDDEN, device=device)
    b = torch.randn(HIDDEN, HIDDEN, device=device)
    return 2 * 8192 * HIDDEN * HIDDEN * _calls_per_second(lambda: a @ b, device, seconds) / 1e9


def memory_bandwidth(device: str, megabytes: int = 256, seconds: float = 0.5) -> float:
    """GB/s of copying a ``megabytes`` float32 tensor into another (bytes read + written) on
    this device and thread count: the memory side of the roofline. Large enough to leave the
    caches a VM usually gets; the loops between the matmuls (gates, batch norm) are bound by
    it, so a machine with fewer bytes per FLOP reaches a smaller fraction of the matmul bound."""
    src = torch.ones(megabytes * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 * _calls_per_second(lambda: dst.copy_(src), device, seconds) / 1e9


def _calls_per_second(fn, device: str, seconds: float) -> float:
    """How many times per second ``fn()`` runs on ``device``, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    _sync(device)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        count += 1
    _sync(device)
    return count / (time.perf_counter() - t0)


def _one_thread_bandwidth() -> float:
    """:func:`memory_bandwidth` on the CPU with one torch thread (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return memory_bandwidth("cpu")
    finally:
        torch.set_num_threads(threads)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _ours(device: str) -> torch.nn.Module:
    return ALIGNN(ALIGNNConfig()).to(device)


def _peer(device: str) -> torch.nn.Module:
    return alignn_pure_model(ALIGNNConfig()).to(device)


def _peer_input(batch: GraphBatch):
    g, lg = alignn_graphs(batch)
    return g, lg, torch.zeros(batch.num_graphs, 3, 3, device=batch.edge_index.device)


def _optimizers(models: dict[str, torch.nn.Module]) -> dict[str, torch.optim.Optimizer]:
    """Each model's optimizer as its project's training code builds it (paper lr and decay)."""
    from types import SimpleNamespace

    from alignn.utils import group_decay, setup_optimizer

    from tlsearch.training.config import TrainConfig
    from tlsearch.training.optim import build_optimizer

    recipe = TrainConfig(learning_rate=1e-3, weight_decay=1e-5)
    peer_config = SimpleNamespace(optimizer="adamw", learning_rate=1e-3, weight_decay=1e-5)
    return {
        "tlsearch": build_optimizer(models["tlsearch"].named_parameters(), recipe),
        "alignn": setup_optimizer(group_decay(models["alignn"]), peer_config),
    }


def _step(model, optimizer, inputs, target, device: str) -> float:
    """One training step; returns the seconds of its forward + backward part."""
    t0 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    out = model(inputs)
    if isinstance(out, dict):
        out = out["out"]
    loss = torch.nn.functional.mse_loss(out.reshape(-1), target)
    loss.backward()
    _sync(device)
    forward_backward = time.perf_counter() - t0
    optimizer.step()
    return forward_backward


def bench_train(records: list[StructureRecord], args: argparse.Namespace) -> dict[str, float]:
    """Structures/s of one training step for both models, ratio and GFLOP/s vs roofline."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = args.device
    n_batches = args.warmup + args.steps
    store = build_graph_store(records[: n_batches * args.batch_size], progress=False)
    order = np.random.default_rng(0).permutation(len(store))
    batches, peer_inputs = [], []
    for k in range(n_batches):
        idx = order[k * args.batch_size : (k + 1) * args.batch_size]
        batch = store.collate(idx).to(device)
        batches.append(batch)
        peer_inputs.append(_peer_input(batch))
    models = {"tlsearch": _ours(device), "alignn": _peer(device)}
    optimizers = _optimizers(models)
    inputs = {"tlsearch": batches, "alignn": peer_inputs}
    steps: dict[str, list[float]] = {k: [] for k in models}
    model_only: dict[str, float] = dict.fromkeys(models, 0.0)
    # both models train in one process, with the heap setting tlsearch's training loop uses
    with retained_heap(device) if args.heap == "retained" else contextlib.nullcontext():
        for k in range(n_batches):
            target = torch.randn(batches[k].num_graphs, device=device)
            for name, model in models.items():
                model.train()
                t0 = time.perf_counter()
                forward_backward = _step(model, optimizers[name], inputs[name][k], target, device)
                _sync(device)
                if k >= args.warmup:
                    steps[name].append(time.perf_counter() - t0)
                    model_only[name] += forward_backward
    seconds = {k: sum(v) for k, v in steps.items()}
    per_step = [a / b for a, b in zip(steps["alignn"], steps["tlsearch"], strict=True)]
    timed = batches[args.warmup :]
    structures = sum(b.num_graphs for b in timed)
    flops = 3 * sum(model_flops(b.num_nodes, b.num_edges, b.num_triplets) for b in timed)
    roofline = matmul_roofline(device)
    bandwidth = memory_bandwidth(device)
    collate_ms = _collate_ms(store, args.batch_size)
    result = {
        "batch_size": args.batch_size,
        "threads": args.threads,
        "mean_atoms_per_batch": float(np.mean([b.num_nodes for b in timed])),
        "mean_bonds_per_batch": float(np.mean([b.num_edges for b in timed])),
        "mean_triplets_per_batch": float(np.mean([b.num_triplets for b in timed])),
        "tlsearch_structures_per_s": structures / seconds["tlsearch"],
        "alignn_structures_per_s": structures / seconds["alignn"],
        "speedup": seconds["alignn"] / seconds["tlsearch"],
        # the same batch, back to back: robust to load changing during the run
        "speedup_median_per_step": float(np.median(per_step)),
        "speedup_per_step_min_max": [float(min(per_step)), float(max(per_step))],
        # forward + backward only (no optimizer step): the models alone, same work
        "speedup_forward_backward": model_only["alignn"] / model_only["tlsearch"],
        "optimizer_step_ms": {
            k: 1e3 * (seconds[k] - model_only[k]) / len(steps[k]) for k in models
        },
        "tlsearch_gflops": flops / seconds["tlsearch"] / 1e9,
        "alignn_gflops": flops / seconds["alignn"] / 1e9,
        "matmul_roofline_gflops": roofline,
        "tlsearch_fraction_of_roofline": flops / seconds["tlsearch"] / 1e9 / roofline,
        "memory_bandwidth_gbs": bandwidth,
        "memory_bandwidth_one_thread_gbs": _one_thread_bandwidth() if device == "cpu" else None,
        # FLOPs the matmuls do per byte the memory moves: the higher, the more the loops
        # between the matmuls cost against the roofline
        "machine_balance_flop_per_byte": roofline / bandwidth,
        "collate_with_line_graph_ms_per_batch": collate_ms,
        "tlsearch_step_ms": 1e3 * seconds["tlsearch"] / len(timed),
        "heap": args.heap,
    }
    logger.info(
        "train (%s, %d threads, batch %d): tlsearch %.1f struct/s, alignn %.1f struct/s, "
        "ratio %.2fx (median per step %.2fx; forward+backward only %.2fx; optimizer step "
        "%.0f vs %.0f ms); %.1f GFLOP/s = %.0f%% of the %.1f GFLOP/s "
        "matmul roofline; memory %.1f GB/s (%s on one thread), %.1f FLOP/byte; "
        "collate+line graph %.1f ms vs step %.1f ms",
        device,
        args.threads,
        args.batch_size,
        result["tlsearch_structures_per_s"],
        result["alignn_structures_per_s"],
        result["speedup"],
        result["speedup_median_per_step"],
        result["speedup_forward_backward"],
        result["optimizer_step_ms"]["tlsearch"],
        result["optimizer_step_ms"]["alignn"],
        result["tlsearch_gflops"],
        100 * result["tlsearch_fraction_of_roofline"],
        roofline,
        bandwidth,
        _one_decimal(result["memory_bandwidth_one_thread_gbs"]),
        result["machine_balance_flop_per_byte"],
        collate_ms,
        result["tlsearch_step_ms"],
    )
    return result


def _one_decimal(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _collate_ms(store, batch_size: int, repeats: int = 10) -> float:
    t0 = time.perf_counter()
    for k in range(repeats):
        start = (k * batch_size) % max(1, len(store) - batch_size)
        store.collate(range(start, start + batch_size))
    return 1e3 * (time.perf_counter() - t0) / repeats
