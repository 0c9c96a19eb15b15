"""Fixtures for transfer tests: a TINY ALIGNN and one real graph batch of generated crystals."""

from __future__ import annotations

import copy

import pytest
import torch

from tlsearch.graphs.batch import GraphBatch
from tlsearch.graphs.settings import GraphSettings
from tlsearch.graphs.store import build_graph_store
from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import ALIGNNConfig
from tlsearch.structures.generate import generate_dataset

TINY = ALIGNNConfig(
    alignn_layers=1,
    gcn_layers=1,
    hidden_features=16,
    embedding_features=8,
    edge_input_features=8,
    triplet_input_features=8,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread (no OpenMP waits on a busy machine); restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_config() -> ALIGNNConfig:
    """One ALIGNN layer, one GCN layer, 16 hidden features."""
    return TINY


@pytest.fixture(scope="session")
def graph_batch() -> GraphBatch:
    """Six small generated crystals (<= 4 atoms, 4 neighbours each) with targets (6, 1)."""
    records = generate_dataset(6, seed=1, max_atoms=4).records
    store = build_graph_store(records, GraphSettings(max_neighbors=4), progress=False)
    batch = store.collate(range(len(store)))
    values = [[records[p].targets["target"]] for p in store.positions]
    batch.targets = torch.tensor(values, dtype=torch.float32)
    batch.target_mask = torch.ones_like(batch.targets, dtype=torch.bool)
    return batch


@pytest.fixture(scope="session")
def _pretrained_once(tiny_config: ALIGNNConfig, graph_batch: GraphBatch) -> ALIGNN:
    torch.manual_seed(0)
    model = ALIGNN(tiny_config)
    model.train()
    with torch.no_grad():
        model(graph_batch)
        model(graph_batch)
    return model


@pytest.fixture
def pretrained(_pretrained_once: ALIGNN) -> ALIGNN:
    """A seeded tiny ALIGNN whose BatchNorm statistics have seen two training batches (a copy)."""
    return copy.deepcopy(_pretrained_once)
