"""Issue 13 in the DDP PT worker: a training part whose last batch is a lone 1-atom cell
trains, and the batch size counts the PT set before its validation split (one worker,
in-process: Ray Train's context, device and the collectives replaced by one-rank stand-ins,
the ``one_rank`` fixture)."""

from __future__ import annotations

import pytest

from tests.training.test_batching import one_atom_cells
from tlsearch.search.run import ddp
from tlsearch.structures.generate import write_jarvis_json
from tlsearch.training.config import RunConfig
from tlsearch.training.distributed import ShardedTrainBatches

pytest.importorskip("ray.train")

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}
RECIPE = {"epochs": 1, "device": "cpu", "num_threads": 1}


def _loop(tmp_path, n: int) -> dict:
    data = write_jarvis_json(one_atom_cells(n), tmp_path / "cells.json")
    run = RunConfig(data=str(data), out_dir=tmp_path / "w", cache_dir=None, model=TINY,
                    train=RECIPE)  # fmt: skip
    return ddp.ddp_train_loop({"run": run.model_dump(mode="json"), "size": None})["metrics"]


def test_a_shard_ending_in_a_lone_one_atom_cell_trains(tmp_path, one_rank):
    metrics = _loop(tmp_path, 19)  # 17 train: 16 + a lone 1-atom cell
    assert (metrics["n_train"], metrics["batch_size"]) == (17, 16)
    assert metrics["epochs_run"] == 1 and not metrics["diverged"]


def test_ddp_batch_size_counts_the_pt_set_before_the_split(tmp_path, one_rank, monkeypatch):
    seen: list[int] = []

    def no_training(self, epoch: int = 0):  # record the global batch size, skip the steps
        seen.append(self.batch_size)
        return iter(())

    monkeypatch.setattr(ShardedTrainBatches, "batches", no_training)
    metrics = _loop(tmp_path, 1050)
    assert (metrics["n_train"], metrics["n_val"]) == (945, 105)
    assert metrics["batch_size"] == 64 and seen == [64]
