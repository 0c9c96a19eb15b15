"""Issue 13: a last training batch of one structure, and the batch-size rule's boundary.

A batch of one structure feeds one row to a BatchNorm over graphs, and (a 1-atom cell) one row
to ALIGNN's BatchNorm over atoms: torch refuses to train on it. The loader merges such a last
batch into the one before; the paper's "64 above 1,000 points" counts the set before its
train/validation split.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from tests.training.conftest import TinyModel
from tlsearch.structures.records import LoadResult, StructureRecord
from tlsearch.training import run
from tlsearch.training.config import RunConfig, TrainConfig
from tlsearch.training.loop import (
    FitResult,
    GraphLoader,
    batch_chunks,
    fit,
    num_batches,
    predict_batches,
)

CPU = torch.device("cpu")
TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}
RECIPE = {"epochs": 1, "device": "cpu", "early_stopping_patience": None, "num_threads": 1}


class GraphNormModel(TinyModel):
    """:class:`TinyModel` with a BatchNorm over graphs (as the new_head layers, MPT heads)."""

    def __init__(self) -> None:
        super().__init__()
        self.graph_norm = nn.BatchNorm1d(1)

    def forward(self, batch):
        return self.graph_norm(super().forward(batch))


def one_atom_cells(n: int, seed: int = 0) -> list[StructureRecord]:
    """``n`` simple-cubic 1-atom cells of assorted elements and lattice constants."""
    rng = np.random.default_rng(seed)
    elements = ("Po", "Cu", "Al", "Fe", "Na")
    return [
        StructureRecord(
            f"c{i}",
            np.eye(3) * rng.uniform(2.8, 3.6),
            np.zeros((1, 3)),
            (elements[i % 5],),
            {"target": float(rng.normal())},
        )  # fmt: skip
        for i in range(n)
    ]


def _sizes(n: int, batch_size: int) -> list[int]:
    return [c.size for c in batch_chunks(np.arange(n), batch_size)]


def test_a_lone_last_structure_joins_the_batch_before():
    assert _sizes(17, 16) == [17]
    assert _sizes(33, 16) == [16, 17]
    assert _sizes(32, 16) == [16, 16]
    assert _sizes(18, 16) == [16, 2]
    assert _sizes(1, 16) == [1]  # nothing to merge into
    assert _sizes(3, 1) == [1, 1, 1]  # batch_size 1 is taken literally
    for n in range(1, 40):
        for batch_size in range(1, 8):
            chunks = batch_chunks(np.arange(n), batch_size)
            assert np.concatenate(chunks).tolist() == list(range(n))
            assert len(chunks) == num_batches(n, batch_size)
            assert batch_size == 1 or n == 1 or min(c.size for c in chunks) > 1


def test_loader_length_and_batches_agree_and_drop_nothing(store_factory):
    store = store_factory(17)
    loader = GraphLoader(store, np.arange(17), store.targets, 8, shuffle=True, seed=3)
    batches = list(loader.batches(2))
    assert len(loader) == len(batches) == 2
    assert [b.num_graphs for b in batches] == [8, 9]
    assert sorted(i for b in batches for i in b.ids) == sorted(store.ids)


def test_fit_trains_a_graph_batchnorm_when_n_train_mod_batch_is_one(store_factory):
    store = store_factory(23)
    idx = np.arange(23)
    train = GraphLoader(store, idx[:17], store.targets, 8, shuffle=True)
    val = GraphLoader(store, idx[17:], store.targets, 8)
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", early_stopping_patience=None)
    result = fit(GraphNormModel(), train, val, cfg, device=CPU, progress=False)
    assert result.epochs_run == 2 and not result.diverged
    assert all(np.isfinite(row["train_loss"]) for row in result.history)


def test_a_batch_that_cannot_be_merged_is_refused_with_a_clear_message(store_factory):
    store = store_factory(3)
    train = GraphLoader(store, [0], store.targets, 16, shuffle=True)
    val = GraphLoader(store, [1, 2], store.targets, 16)
    cfg = TrainConfig(epochs=1, device="cpu")
    with pytest.raises(ValueError, match=r"training batch of 1 structure\(s\) .*\(s0\).*BatchNorm"):
        fit(GraphNormModel(), train, val, cfg, device=CPU, progress=False)


def _cells_run(tmp_path, n: int, name: str, **train) -> tuple[RunConfig, LoadResult]:
    cfg = RunConfig(
        data="onecells", out_dir=tmp_path / name, cache_dir=None, model=TINY,
        train=RECIPE | train,
    )  # fmt: skip
    return cfg, LoadResult(one_atom_cells(n), [], source="onecells")


def test_plain_alignn_trains_when_the_lone_last_structure_is_a_one_atom_cell(tmp_path):
    # every structure is a 1-atom cell, so whichever is shuffled last is one (17 = 16 + 1)
    cfg, records = _cells_run(tmp_path, 19, "cells")
    metrics = run.train_run(cfg, progress=False, train_records=records)
    assert (metrics["n_train"], metrics["batch_size"]) == (17, 16)
    assert metrics["epochs_run"] == 1 and not metrics["diverged"]
    assert metrics["val"]["n"] == 2


def test_eval_predictions_do_not_depend_on_the_batching(tmp_path):
    from tlsearch.graphs.settings import GraphSettings
    from tlsearch.graphs.store import build_graph_store
    from tlsearch.model.alignn import ALIGNN
    from tlsearch.model.config import ALIGNNConfig
    from tlsearch.structures.generate import generate_dataset

    records = generate_dataset(6, seed=3, max_atoms=6).records + one_atom_cells(3)
    store = build_graph_store(records, GraphSettings(max_neighbors=6), progress=False)
    torch.manual_seed(0)
    model = ALIGNN(ALIGNNConfig(**TINY))
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        model(store.collate(range(len(store))))
    idx = np.arange(len(store))  # 9 structures: batch 4 gives [4, 5], batch 8 gives [9]
    runs = [predict_batches(model, GraphLoader(store, idx, None, b), CPU) for b in (1, 4, 8, 9)]
    for ids, pred, _ in runs[1:]:
        assert ids == runs[0][0]
        np.testing.assert_allclose(pred, runs[0][1], rtol=1e-5, atol=1e-6)


def test_batch_size_rule_counts_the_set_before_the_validation_split(tmp_path, monkeypatch):
    """A 1,050-structure set trains on 945 after the 90:10 split and still gets 64."""
    seen: dict[str, int] = {}

    def fake_fit(model, train, val, cfg, **kwargs):  # no real training of 945 structures
        seen["train"], seen["val"] = train.batch_size, val.batch_size
        return FitResult(None, float("nan"), 0, False, False, [], 0.0, float("nan"))

    monkeypatch.setattr(run, "fit", fake_fit)
    cfg, records = _cells_run(tmp_path, 1050, "big")
    metrics = run.train_run(cfg, progress=False, train_records=records)
    assert (metrics["n_train"], metrics["n_val"]) == (945, 105)
    assert metrics["batch_size"] == 64 and seen == {"train": 64, "val": 64}
    assert json.loads((cfg.out_dir / "metrics.json").read_text())["batch_size"] == 64
    assert "batch_size: 64" in (cfg.out_dir / "config.yaml").read_text()
