"""The one training loop on several processes (:mod:`tlsearch.training.distributed`): the
global batches of one process split across ranks, and a 2-process gloo run of ``train_run``
against a 1-process one on the same data (no Ray: torch's own process group)."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tlsearch.training.config import RunConfig
from tlsearch.training.distributed import Distributed, ShardedTrainBatches, global_chunks
from tlsearch.training.loop import GraphLoader, batch_chunks
from tlsearch.training.run import train_run

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}


class _Store:
    """A store whose batches are just the positions they hold."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def collate(self, indices):
        return list(indices)


@pytest.mark.parametrize(("n", "batch", "world"), [(45, 8, 2), (17, 16, 2), (50, 16, 4), (9, 4, 2)])
def test_ranks_split_the_one_process_batches(n, batch, world):
    loader = GraphLoader(_Store(n), np.arange(n), None, batch, shuffle=True, seed=3)
    one = batch_chunks(loader.order(5), batch)
    ranks = [ShardedTrainBatches(loader, Distributed(r, world, torch.device("cpu")))
             for r in range(world)]  # fmt: skip
    steps = [list(r.batches(5)) for r in ranks]
    assert len({len(s) for s in steps}) == 1 and len(steps[0]) == len(ranks[0])
    merged = [sorted(sum((s[i] for s in steps), [])) for i in range(len(steps[0]))]
    assert sorted(sum(merged, [])) == list(range(n))  # every structure once per epoch
    assert [len(m) for m in merged][:-1] == [len(c) for c in one][: len(merged) - 1]
    assert all(len(s[i]) >= 2 for s in steps for i in range(len(s)))
    assert [sorted(m) for m in merged[:-1]] == [sorted(c.tolist()) for c in one[: len(merged) - 1]]


def test_a_batch_too_small_for_the_workers_is_refused():
    with pytest.raises(ValueError, match="batch_size 3 over 2 DDP workers"):
        global_chunks(np.arange(20), 3, 2)
    with pytest.raises(ValueError, match="3 training structures"):
        global_chunks(np.arange(3), 8, 2)
    assert [c.size for c in global_chunks(np.arange(19), 8, 2)] == [8, 11]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, world: int, port: int, run_json: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        run = RunConfig.model_validate_json(run_json)
        run = run.model_copy(update={"out_dir": Path(out) / f"rank{rank}"})
        train_run(run, progress=False, distributed=Distributed(rank, world, torch.device("cpu")))
    finally:
        dist.destroy_process_group()


def _run(tmp_path: Path, **train) -> RunConfig:
    recipe = {"device": "cpu", "num_threads": 1, "batch_size": 16, **train}
    return RunConfig(data="generated:96:4", out_dir=tmp_path / "one", cache_dir=tmp_path / "c",
                     model=TINY, train=recipe)  # fmt: skip


def test_two_processes_train_like_one(tmp_path):
    # measured here: both stop at epoch 14 (best 11), validation MAE 3.78 vs 3.50
    run = _run(tmp_path, epochs=20, early_stopping_patience=3, early_stopping_after_warmup=False)
    one = train_run(run, progress=False)
    mp.start_processes(_rank, args=(2, _free_port(), run.model_dump_json(), str(tmp_path / "ddp")),
                       nprocs=2, join=True, start_method="spawn")  # fmt: skip
    two = json.loads((tmp_path / "ddp" / "rank0" / "metrics.json").read_text())
    assert not (tmp_path / "ddp" / "rank1" / "metrics.json").exists()  # rank 0 writes
    assert (two["ddp_workers"], one["ddp_workers"]) == (2, 1)
    same = ("n_train", "n_val", "batch_size", "epochs_run", "best_epoch", "early_stopped",
            "scaler_id")  # fmt: skip
    assert {k: two[k] for k in same} == {k: one[k] for k in same}
    assert two["val"]["n"] == one["val"]["n"]  # the whole validation set, scored on rank 0
    # the same batches and schedule; BatchNorm sees each rank's half of a batch, so not equal
    assert two["val"]["mae"] == pytest.approx(one["val"]["mae"], rel=0.15)
    history = (tmp_path / "ddp" / "rank0" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + two["epochs_run"]
    assert all(math.isfinite(float(row.split(",")[3])) for row in history[1:])
