"""A batch of crystal graphs as plain tensors with offsets (no DGL).

Node indices in ``edge_index`` and bond indices in ``lg_index`` are global within the batch:
structure ``b``'s atoms are rows ``node_offsets[b]:node_offsets[b+1]`` of ``atom_features``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass
class GraphBatch:
    """Everything the model reads, for ``num_graphs`` structures.

    Shapes: N atoms, E directed bonds, T line-graph edges (bond pairs sharing an atom), B graphs.

    Attributes:
        atom_features: (N, F) float, CGCNN features (F = 92).
        edge_index: (2, E) long, row 0 = source atom, row 1 = destination atom.
        edge_vectors: (E, 3) float, Cartesian vector from source to destination (Angstrom).
        lg_index: (2, T) long, line-graph edges: bond ``lg_index[0]`` = (u->v) feeds bond
            ``lg_index[1]`` = (v->w); backtracking (w == u) included, as DGL's
            ``line_graph(shared=True)``.
        angle_cosines: (T,) float, cosine of the angle between -r(u->v) and r(v->w).
        node_graph: (N,) long, graph index of every atom.
        num_graphs: B.
        targets: (B, P) float or None.
        target_mask: (B, P) bool or None; False where a target is unknown (multi-property).
        ids: structure ids, length B.
    """

    atom_features: torch.Tensor
    edge_index: torch.Tensor
    edge_vectors: torch.Tensor
    lg_index: torch.Tensor
    angle_cosines: torch.Tensor
    node_graph: torch.Tensor
    num_graphs: int
    targets: torch.Tensor | None = None
    target_mask: torch.Tensor | None = None
    ids: list[str] = field(default_factory=list)

    @property
    def num_nodes(self) -> int:
        return int(self.atom_features.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def num_triplets(self) -> int:
        return int(self.lg_index.shape[1])

    def pin_memory(self) -> GraphBatch:
        """The batch with every tensor in page-locked memory (for ``to(cuda, non_blocking)``)."""
        kwargs = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kwargs[f.name] = v.pin_memory() if isinstance(v, torch.Tensor) else v
        return GraphBatch(**kwargs)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> GraphBatch:
        """Move every tensor to ``device``; returns a new batch."""
        kwargs = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device, non_blocking=non_blocking)
            kwargs[f.name] = v
        return GraphBatch(**kwargs)
