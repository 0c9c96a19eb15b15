"""Line graph of a bond graph and bond-angle cosines, in torch (built per batch, not stored).

Why per batch: a k=12 graph has ~24 directed bonds per atom and ~576 bond pairs per atom, so
storing the line graph would make the cache ~20x larger (the 132,752-structure FE corpus would
need ~20 GB), while rebuilding it is a few vectorised index operations (see
``bench/`` and the closing note of issue 2 for the measurements).
"""

from __future__ import annotations

import torch


def line_graph(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Line-graph edges of a directed graph, as DGL's ``line_graph(backtracking=True)``.

    Bond ``a = (u -> v)`` is connected to every bond ``b = (v -> w)`` leaving ``v`` (including
    ``w == u``, and ``b == a`` for a self-loop).

    Args:
        edge_index: (2, E) long, source and destination atom of every bond.
        num_nodes: number of atoms.

    Returns:
        (2, T) long: ``[a, b]`` pairs of bond indices, grouped by ``a`` in increasing order.
    """
    src, dst = edge_index[0], edge_index[1]
    num_edges = src.numel()
    order = torch.argsort(src, stable=True)  # bonds grouped by source atom
    out_degree = torch.bincount(src, minlength=num_nodes)
    first_out = torch.cumsum(out_degree, 0) - out_degree  # start of each atom's group in `order`
    fan = out_degree[dst]  # bonds leaving the destination of each bond
    a = torch.repeat_interleave(torch.arange(num_edges, device=src.device), fan)
    group_start = torch.cumsum(fan, 0) - fan
    within = torch.arange(a.numel(), device=src.device) - group_start[a]
    b = order[first_out[dst[a]] + within]
    return torch.stack([a, b])


def bond_cosines(edge_vectors: torch.Tensor, lg_index: torch.Tensor) -> torch.Tensor:
    """cos of the angle at the shared atom ``v`` between bonds ``a = (u->v)`` and ``b = (v->w)``.

    As alignn's ``compute_bond_cosines``: ``r1 = -r_a``, ``r2 = r_b``,
    ``cos = r1 . r2 / (|r1| |r2|)`` clamped to [-1, 1]. Bonds are normalised once (E of them)
    before the gather over the T >> E pairs; equal to alignn's to float32 rounding.
    """
    unit = edge_vectors / torch.linalg.norm(edge_vectors, dim=1, keepdim=True)
    cos = -(unit[lg_index[0]] * unit[lg_index[1]]).sum(dim=1)
    return torch.clamp(cos, -1.0, 1.0)
