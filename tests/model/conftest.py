"""Model-test helpers: small random crystal-like graph batches, and alignn as a peer."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator, Sequence

import pydantic
import pytest
import torch
from torch import nn

from tlsearch.graphs.batch import GraphBatch
from tlsearch.model.kernels import bn_silu


def random_graph(num_atoms: int, neighbors: int, seed: int, features: int = 92) -> GraphBatch:
    """One structure: every atom has ``neighbors`` outgoing bonds to random atoms of its own
    cell (self-loops and repeated pairs allowed, as periodic images make them); the line
    graph joins every bond (u->v) to every bond (v->w), backtracking included."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.arange(num_atoms).repeat_interleave(neighbors)
    dst = torch.randint(0, num_atoms, src.shape, generator=gen)
    vectors = torch.randn(src.numel(), 3, generator=gen)
    lengths = 1.0 + 3.0 * torch.rand(src.numel(), 1, generator=gen)
    vectors = vectors / vectors.norm(dim=1, keepdim=True) * lengths
    bond_ids = torch.arange(src.numel())
    pairs = [(e, f) for e in bond_ids.tolist() for f in bond_ids[src == dst[e]].tolist()]
    lg_index = torch.tensor(pairs, dtype=torch.long).T.reshape(2, -1)
    r1, r2 = -vectors[lg_index[0]], vectors[lg_index[1]]
    cosines = (r1 * r2).sum(1) / (r1.norm(dim=1) * r2.norm(dim=1))
    return GraphBatch(
        atom_features=torch.rand(num_atoms, features, generator=gen),
        edge_index=torch.stack([src, dst]),
        edge_vectors=vectors,
        lg_index=lg_index,
        angle_cosines=cosines.clamp(-1.0, 1.0),
        node_graph=torch.zeros(num_atoms, dtype=torch.long),
        num_graphs=1,
        targets=torch.randn(1, 1, generator=gen),
    )


def concat_batches(batches: Sequence[GraphBatch]) -> GraphBatch:
    """One batch from several, offsetting atom, bond and graph indices."""
    atom_offsets = torch.tensor([0] + [b.num_nodes for b in batches]).cumsum(0)
    bond_offsets = torch.tensor([0] + [b.num_edges for b in batches]).cumsum(0)
    graph_offsets = torch.tensor([0] + [b.num_graphs for b in batches]).cumsum(0)
    return GraphBatch(
        atom_features=torch.cat([b.atom_features for b in batches]),
        edge_index=torch.cat([b.edge_index + o for b, o in zip(batches, atom_offsets)], 1),
        edge_vectors=torch.cat([b.edge_vectors for b in batches]),
        lg_index=torch.cat([b.lg_index + o for b, o in zip(batches, bond_offsets)], 1),
        angle_cosines=torch.cat([b.angle_cosines for b in batches]),
        node_graph=torch.cat([b.node_graph + o for b, o in zip(batches, graph_offsets)]),
        num_graphs=int(graph_offsets[-1]),
        targets=torch.cat([b.targets for b in batches]),
    )


@pytest.fixture
def three_graphs() -> list[GraphBatch]:
    """Three different structures (2, 3 and 5 atoms)."""
    return [random_graph(2, 4, seed=1), random_graph(3, 5, seed=2), random_graph(5, 4, seed=3)]


class _NoPooling(nn.Module):
    """Stands in for DGL's AvgPooling, which alignn builds in ALIGNN.__init__ (no weights)."""


@pytest.fixture(scope="session")
def alignn_peer() -> Iterator[types.SimpleNamespace]:
    """alignn's ``models.alignn`` (as ``classic``) and ``models.alignn_atomwise_pure`` (``pure``).

    Skips when alignn is not installed. alignn uses ``pydantic_settings`` only as the base of
    its env-var-reading configs; when that package is absent a ``pydantic.BaseModel`` stand-in
    is put in ``sys.modules`` for the session, and every module imported under it is removed
    afterwards.
    """
    pytest.importorskip("alignn")
    before = set(sys.modules)
    with pytest.MonkeyPatch.context() as patch:
        try:
            import pydantic_settings  # noqa: F401
        except ImportError:
            stub = types.ModuleType("pydantic_settings")
            stub.BaseSettings = pydantic.BaseModel
            patch.setitem(sys.modules, "pydantic_settings", stub)
        try:
            classic = importlib.import_module("alignn.models.alignn")
            pure = importlib.import_module("alignn.models.alignn_atomwise_pure")
            graphs = importlib.import_module("alignn.torch_graph_builder")
        except ImportError as exc:
            pytest.skip(f"alignn models do not import: {exc}")
        patch.setattr(classic, "AvgPooling", _NoPooling)
        yield types.SimpleNamespace(classic=classic, pure=pure, graphs=graphs)
    for name in set(sys.modules) - before:
        if name.split(".")[0] in {"alignn", "pydantic_settings"}:
            del sys.modules[name]


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-chunk-workers"])
def chunk_workers(request, monkeypatch):
    """1: the chunk loops run in turn; 2: split over two chunk workers (as large graphs on a
    2-thread CPU are), forced on the tiny test graph."""
    threads = torch.get_num_threads()
    if request.param > 1:
        monkeypatch.setattr(bn_silu, "SERIAL_ELEMENTS", 0)
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(threads)
