"""A DDP PT job whose worker fails on bad data is recorded as failed, not retried."""

from __future__ import annotations

import pytest

from tlsearch.jobs.config import DataRef, JobConfig
from tlsearch.search.run import ddp

train_errors = pytest.importorskip("ray.train")


def _job(tmp_path):
    ref = DataRef(name="A", data="generated:20:1", size=10)
    return JobConfig(kind="pretrain", seed=0, data=ref, num_workers=2,
                     cache_dir=str(tmp_path / "c"))  # fmt: skip


def test_worker_value_errors_are_unwrapped():
    cause = ValueError("structure 7 has no atoms")
    group = train_errors.WorkerGroupError("rank 1 failed", {1: RuntimeError("x"), 0: cause})
    found = ddp.deterministic_cause(train_errors.ControllerError(group))
    assert isinstance(found, ValueError) and "structure 7 has no atoms" in str(found)
    transient = train_errors.WorkerGroupError("lost", {0: ConnectionError("node died")})
    assert ddp.deterministic_cause(transient) is None


def test_run_ddp_pretrain_raises_the_deterministic_cause(tmp_path, monkeypatch):
    class FailingTrainer:
        def __init__(self, *args, **kwargs):
            pass

        def fit(self):
            raise train_errors.WorkerGroupError("w0", {0: FileNotFoundError("no such file x")})

    import ray.train.torch

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", FailingTrainer)
    with pytest.raises(ValueError, match="DDP worker failed: FileNotFoundError: no such file x"):
        ddp.run_ddp_pretrain(_job(tmp_path), tmp_path / "w")

    class FlakyTrainer(FailingTrainer):
        def fit(self):
            raise train_errors.WorkerGroupError("w0", {0: ConnectionError("node died")})

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", FlakyTrainer)
    with pytest.raises(train_errors.WorkerGroupError):  # transient: Tune retries it
        ddp.run_ddp_pretrain(_job(tmp_path), tmp_path / "w")


def test_a_ray_without_return_value_is_refused_before_training(tmp_path, monkeypatch):
    class OldResult:  # Ray 2.50's Train Result: no return_value
        error = None

    class MustNotRun:
        def __init__(self, *args, **kwargs):
            raise AssertionError("trained on a Ray that cannot hand the model back")

    import ray.train
    import ray.train.torch

    monkeypatch.setattr(ray.train, "Result", OldResult)
    monkeypatch.setattr(ray.train.torch, "TorchTrainer", MustNotRun)
    with pytest.raises(NotImplementedError, match="return_value; this node runs ray"):
        ddp.run_ddp_pretrain(_job(tmp_path), tmp_path / "w")
