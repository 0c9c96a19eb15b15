"""Fakes for training tests: a tiny graph store and a tiny model (no real graphs or ALIGNN)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from tlsearch.graphs.batch import GraphBatch

NUM_FEATURES = 4


class FakeStore:
    """``n`` random small graphs; the target of graph i is a smooth function of its atoms."""

    def __init__(self, n: int = 40, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.ids = [f"s{i}" for i in range(n)]
        self.rejected: list = []
        self.cache_hit = False
        self.features = [
            rng.normal(size=(int(rng.integers(2, 5)), NUM_FEATURES)).astype(np.float32)
            for _ in range(n)
        ]
        self.targets = np.array([[f[:, 0].mean() + 0.5 * f[:, 1].mean()] for f in self.features])

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, indices: Sequence[int]) -> GraphBatch:
        feats = [torch.from_numpy(self.features[i]) for i in indices]
        counts = [f.shape[0] for f in feats]
        node_graph = torch.repeat_interleave(torch.arange(len(feats)), torch.tensor(counts))
        n = sum(counts)
        edge_index = torch.stack([torch.arange(n), torch.arange(n).roll(1)])
        return GraphBatch(
            atom_features=torch.cat(feats),
            edge_index=edge_index,
            edge_vectors=torch.ones(n, 3),
            lg_index=torch.zeros(2, 0, dtype=torch.long),
            angle_cosines=torch.zeros(0),
            node_graph=node_graph,
            num_graphs=len(feats),
            ids=[self.ids[i] for i in indices],
        )


class TinyModel(nn.Module):
    """Linear -> BatchNorm -> SiLU per atom, mean over each graph's atoms, linear head."""

    def __init__(self, outputs: int = 1, hidden: int = 8) -> None:
        super().__init__()
        self.embed = nn.Linear(NUM_FEATURES, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        h = torch.nn.functional.silu(self.norm(self.embed(batch.atom_features)))
        pooled = torch.zeros(batch.num_graphs, h.shape[1], dtype=h.dtype, device=h.device)
        pooled.index_add_(0, batch.node_graph, h)
        counts = torch.bincount(batch.node_graph, minlength=batch.num_graphs).clamp(min=1)
        return self.head(pooled / counts[:, None].to(h.dtype))


@pytest.fixture
def store_factory():
    """``store_factory(n=40, seed=0)`` -> a :class:`FakeStore`."""
    return FakeStore


@pytest.fixture
def model_factory():
    """``model_factory(outputs=1, seed=0)`` -> a seeded :class:`TinyModel`."""

    def make(outputs: int = 1, seed: int = 0) -> TinyModel:
        torch.manual_seed(seed)
        return TinyModel(outputs)

    return make
