"""Micro-benchmark: forward + backward of the edge-gated convolution, and of the whole model.

    python bench/bench_model_layers.py layer [--edges 200000 --nodes 10000 --hidden 256]
    python bench/bench_model_layers.py model [--graphs 16 --atoms 10 --neighbors 24]

``layer`` times one ``EdgeGatedGraphConv`` (train mode) three ways: ``reference`` (the
equations with plain autograd, alignn's op order), ``fused`` (our default kernel) and, when
the ``alignn`` package imports, alignn's own ``EdgeGatedGraphConvPure`` (same math with
LayerNorm). ``model`` times a training step (forward, backward, Adam) of our ``ALIGNN``
against alignn's ``ALIGNNAtomWisePure`` (calculate_gradient=False) at the same widths and
depths, on the same synthetic k-neighbour graphs. Variants are run round-robin so that
background load hits them alike; the minimum and the median over repeats are printed.

CPU tip: most of the unfused variants' time goes to page faults on fresh large
allocations; ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<big>`` in the environment (or
jemalloc/tcmalloc) shrinks it, so compare variants under the same allocator settings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from collections.abc import Callable

import torch

from tlsearch.graphs.batch import GraphBatch
from tlsearch.model import ALIGNN, ALIGNNConfig, EdgeGatedGraphConv
from tlsearch.model.peer import alignn_graphs, alignn_pure_model


def import_alignn_pure() -> types.ModuleType | None:
    """alignn's pure-PyTorch model module, or None when alignn is not installed.

    alignn imports ``pydantic_settings`` only for its env-var config base class; when that
    package is missing a stand-in based on ``pydantic.BaseModel`` is enough for benchmarking.
    """
    try:
        import pydantic_settings  # noqa: F401
    except ImportError:
        import pydantic

        sys.modules["pydantic_settings"] = types.SimpleNamespace(BaseSettings=pydantic.BaseModel)
    try:
        from alignn.models import alignn_atomwise_pure
    except ImportError:
        return None
    return alignn_atomwise_pure


def local_edges(num_nodes: int, per_node: int, window: int, gen: torch.Generator) -> torch.Tensor:
    """(2, num_nodes * per_node) edges, ``per_node`` leaving every node towards nodes at most
    ``window`` away, grouped by source: the layout of a collated batch, whose bonds (and line
    graph pairs) come structure by structure and grouped by their first index."""
    src = torch.arange(num_nodes).repeat_interleave(per_node)
    offsets = torch.randint(-window, window + 1, src.shape, generator=gen)
    dst = (src + offsets).clamp(0, num_nodes - 1)
    return torch.stack([src, dst])


def synthetic_batch(graphs: int, atoms: int, neighbors: int, seed: int = 0) -> GraphBatch:
    """``graphs`` structures of ``atoms`` atoms, each atom with ``neighbors`` outgoing bonds.

    The line graph joins every bond (u->v) to every bond (v->w), like alignn's.
    """
    gen = torch.Generator().manual_seed(seed)
    n = graphs * atoms
    src = torch.arange(n).repeat_interleave(neighbors)
    dst = (src // atoms) * atoms + torch.randint(0, atoms, src.shape, generator=gen)
    vectors = torch.randn(src.numel(), 3, generator=gen)
    lengths = 1.5 + 2.5 * torch.rand(src.numel(), 1, generator=gen)
    vectors = vectors / vectors.norm(dim=1, keepdim=True) * lengths
    # bond e=(u->v) feeds every bond leaving v; bonds are grouped by source atom
    first = dst * neighbors
    lg_src = torch.arange(src.numel()).repeat_interleave(neighbors)
    lg_dst = first.repeat_interleave(neighbors) + torch.arange(neighbors).repeat(src.numel())
    r1, r2 = -vectors[lg_src], vectors[lg_dst]
    cosines = (r1 * r2).sum(1) / (r1.norm(dim=1) * r2.norm(dim=1))
    return GraphBatch(
        atom_features=torch.rand(n, 92, generator=gen),
        edge_index=torch.stack([src, dst]),
        edge_vectors=vectors,
        lg_index=torch.stack([lg_src, lg_dst]),
        angle_cosines=cosines.clamp(-1, 1),
        node_graph=torch.arange(graphs).repeat_interleave(atoms),
        num_graphs=graphs,
        targets=torch.randn(graphs, 1, generator=gen),
    )


def time_round_robin(steps: dict[str, Callable[[], None]], repeats: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        step()
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    base = min(times[next(iter(times))])
    for name, ts in times.items():
        print(
            f"{name:>16s}: min {min(ts) * 1e3:8.1f} ms  median {statistics.median(ts) * 1e3:8.1f}"
            f" ms  ({base / min(ts):.2f}x vs {next(iter(times))})"
        )


def bench_layer(args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(0)
    edge_index = local_edges(args.nodes, args.edges // args.nodes, args.window, gen)
    dim = args.hidden
    x = torch.randn(args.nodes, dim, generator=gen, requires_grad=True)
    y = torch.randn(edge_index.shape[1], dim, generator=gen, requires_grad=True)
    reference = EdgeGatedGraphConv(dim, dim, kernel="reference")
    fused = EdgeGatedGraphConv(dim, dim, kernel="fused")
    fused.load_state_dict(reference.state_dict())

    def step(conv: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> Callable[[], None]:
        def run() -> None:
            x_new, y_new = conv()
            (x_new.sum() + y_new.sum()).backward()

        return run

    steps = {
        "reference": step(lambda: reference(edge_index, x, y)),
        "fused": step(lambda: fused(edge_index, x, y)),
    }
    pure = import_alignn_pure()
    if pure is not None:
        alignn_conv = pure.EdgeGatedGraphConvPure(dim, dim)
        src, dst = edge_index[0], edge_index[1]
        steps["alignn_pure"] = step(lambda: alignn_conv.forward_tensors(src, dst, args.nodes, x, y))
    print(f"EdgeGatedGraphConv fwd+bwd, N={args.nodes} E={edge_index.shape[1]} D={dim}")
    time_round_robin(steps, args.repeats)


def bench_model(args: argparse.Namespace) -> None:
    batch = synthetic_batch(args.graphs, args.atoms, args.neighbors)
    config = ALIGNNConfig(hidden_features=args.hidden)
    ours = ALIGNN(config)
    ours_opt = torch.optim.AdamW(ours.parameters(), lr=1e-4)

    def ours_step() -> None:
        ours_opt.zero_grad()
        loss = torch.nn.functional.mse_loss(ours(batch), batch.targets)
        loss.backward()
        ours_opt.step()

    steps = {"tlsearch": ours_step}
    pure = import_alignn_pure()
    if pure is not None:
        steps["alignn_pure"] = alignn_pure_step(batch, config)
    print(
        f"ALIGNN train step: B={batch.num_graphs} N={batch.num_nodes} E={batch.num_edges}"
        f" T={batch.num_triplets} hidden={args.hidden}"
    )
    time_round_robin(steps, args.repeats)


def alignn_pure_step(batch: GraphBatch, config: ALIGNNConfig) -> Callable[[], None]:
    """A training step of alignn's ALIGNNAtomWisePure on the same graphs."""
    model = alignn_pure_model(config)
    g, lg = alignn_graphs(batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run() -> None:
        opt.zero_grad()
        out = model((g, lg, None))["out"].reshape(batch.targets.shape)
        torch.nn.functional.mse_loss(out, batch.targets).backward()
        opt.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["layer", "model"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--edges", type=int, default=200_000)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=60, help="layer: max |src - dst|")
    parser.add_argument("--graphs", type=int, default=16)
    parser.add_argument("--atoms", type=int, default=10)
    parser.add_argument("--neighbors", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bench_layer(args) if args.what == "layer" else bench_model(args)


if __name__ == "__main__":
    main()
