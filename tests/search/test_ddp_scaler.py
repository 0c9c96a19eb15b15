"""A DDP PT job normalises with the dataset's pool scaler, as ``train_run`` does, and its worker
holds the same test part out as the trial would (one worker, in-process: Ray Train's context,
device and collectives replaced by one-rank stand-ins)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from tlsearch.jobs.config import DataRef, JobConfig
from tlsearch.jobs.run import training_run_config
from tlsearch.search.run import ddp
from tlsearch.training.checkpoint import bundle_from_payload
from tlsearch.training.run import pool_scaler, prepare_run_data

pytest.importorskip("ray.train")

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}


def test_ddp_pretrain_fits_the_scaler_on_the_whole_pool(tmp_path, one_rank):
    ref = DataRef(name="A", data="generated:30:1", size=12, test_fraction=0.2)
    train = {"epochs": 1, "device": "cpu", "target_normalisation": "paper", "num_threads": 1}
    job = JobConfig(kind="pretrain", seed=0, data=ref, train=train, model=TINY)
    run = training_run_config(job, ref, tmp_path / "w")  # the split, as the trial would see it
    # the worker gets the job and holds the test part out itself (nothing staged to share)
    out = ddp.ddp_train_loop({"job": job.model_dump(mode="json"), "size": 12})
    metrics = out["metrics"]
    assert metrics["n_train"] + metrics["n_val"] == 12
    assert metrics["n_test"] == 6  # 20% of 30, held out by the worker with split_seed 0
    test_ids = {line.split(",")[0] for line in out["files"]["predictions_test.csv"].decode()
                .splitlines()[1:]}  # fmt: skip
    staged = Path(run.test).read_text()
    assert all(i in staged for i in test_ids)  # the same test part as the trial's split
    expected = pool_scaler(prepare_run_data(run, run.data, None, "training", False), "paper")
    assert metrics["scaler_id"] == expected.fingerprint()
    assert metrics["scaler"] == expected.to_dict()
    model = io.BytesIO(out["files"]["model.pt"])
    payload = torch.load(model, map_location="cpu", weights_only=True)
    saved = bundle_from_payload(payload, "model.pt")[1].scaler
    np.testing.assert_array_equal(saved.scale, expected.scale)
