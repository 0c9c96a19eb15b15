"""A DDP PT job normalises with the dataset's pool scaler, as ``train_run`` does (one worker,
in-process: Ray Train's context, device and collectives replaced by one-rank stand-ins)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from tlsearch.search import ddp
from tlsearch.search.jobs import DataRef, JobConfig, training_run_config
from tlsearch.training.checkpoint import bundle_from_payload
from tlsearch.training.run import pool_scaler, prepare_run_data

pytest.importorskip("ray.train")

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}


def test_ddp_pretrain_fits_the_scaler_on_the_whole_pool(tmp_path, one_rank):
    ref = DataRef(name="A", data="generated:30:1", size=12, test_fraction=0.2)
    train = {"epochs": 1, "device": "cpu", "target_normalisation": "paper", "num_threads": 1}
    job = JobConfig(kind="pretrain", seed=0, data=ref, train=train, model=TINY)
    run = training_run_config(job, ref, tmp_path / "w")
    out = ddp.ddp_train_loop({"run": run.model_dump(mode="json"), "size": 12})
    metrics = out["metrics"]
    assert metrics["n_train"] + metrics["n_val"] == 12
    expected = pool_scaler(prepare_run_data(run, run.data, None, "training", False), "paper")
    assert metrics["scaler_id"] == expected.fingerprint()
    assert metrics["scaler"] == expected.to_dict()
    model = io.BytesIO(out["files"]["model.pt"])
    payload = torch.load(model, map_location="cpu", weights_only=True)
    saved = bundle_from_payload(payload, "model.pt")[1].scaler
    np.testing.assert_array_equal(saved.scale, expected.scale)
