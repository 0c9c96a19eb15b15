"""A trial's GPU share: a trial at ``gpu: 0.25`` caps its CUDA memory at that share, and a CUDA
out-of-memory is retried once at half the batch size, then recorded as ``failed`` with its
reason: never a ``diverged`` model, never an endless Tune retry (no Ray started here)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.search.conftest import executions, fake_spec
from tests.search.fakes import fake_job
from tlsearch.jobs.identity import pretrain_key
from tlsearch.results.store import RunStore
from tlsearch.search.plan.points import Point
from tlsearch.search.plan.prepare import resolve_storage
from tlsearch.search.run import gpu_memory
from tlsearch.search.run.trainable import TrialEnv, ensure_pt_row, run_seed, search_trial
from tlsearch.training.loop import TrainingOutOfMemoryError

TORCH_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 20.00 GiB total capacity)"
POINT = Point("scratch", "A", 10, "random", 1e-3)


def _env(tmp_path, **over) -> TrialEnv:
    spec = resolve_storage(fake_spec(tmp_path, **over), str(tmp_path))
    return TrialEnv(spec=spec, base_dir=str(tmp_path))


def _row(env, run_id):
    return RunStore.for_search(env.spec.storage, env.spec.name).read_row(run_id)


def _out_of_memory_while(predicate, error=lambda: torch.cuda.OutOfMemoryError(TORCH_OOM)):
    """A job function that runs out of CUDA memory while ``predicate(job)`` holds."""
    batches: list = []

    def job_fn(job, workdir):
        batches.append(job.train.get("batch_size"))
        if predicate(job):
            raise error()
        return fake_job(job, workdir)

    return job_fn, batches


def test_a_cuda_oom_is_retried_once_at_half_the_batch(tmp_path):
    env = _env(tmp_path)
    job_fn, batches = _out_of_memory_while(lambda job: job.train.get("batch_size") != 8)
    row = run_seed(env, POINT, 0, job_fn, None)
    assert batches == [None, 8]  # the paper's rule gave 16 for 10 structures
    assert row["status"] == "ok" and row["val_mae"] is not None
    assert row["error"].startswith("recovered from a CUDA out of memory at batch_size 16: ")
    assert json.loads(row["config_json"])["train"]["batch_size"] == 8
    assert _row(env, row["run_id"])["error"] == row["error"]
    assert len(executions(tmp_path)) == 1  # the retry ran; the OOM'd attempt never finished


def test_a_second_oom_is_a_failed_row_naming_the_reason(tmp_path):
    env = _env(tmp_path)
    job_fn, batches = _out_of_memory_while(lambda job: True)
    row = run_seed(env, POINT, 0, job_fn, None)
    assert batches == [None, 8]  # once more, not Tune's max_failures times
    assert row["status"] == "failed"  # recorded, not diverged, not raised
    assert row["error"].startswith(
        f"GpuOutOfMemoryError: seed-run {row['run_id']}: CUDA out of memory at batch_size 16 "
        "and again at 8; give the trial a larger GPU share (resources.gpu)"
    )
    assert TORCH_OOM[:30] in row["error"]


def test_the_loaders_batch_size_is_halved_and_two_is_the_floor(tmp_path):
    env = _env(tmp_path, train={"batch_size": 64})
    seen: list = []

    def job_fn(job, workdir):
        seen.append(job.train["batch_size"])
        raise RuntimeError("wrapped") from TrainingOutOfMemoryError("cuda:0 out of memory", 3)

    row = run_seed(env, POINT, 0, job_fn, None)
    assert seen == [64]  # the loader said 3 (3 // 2 < 2): not retried
    assert row["status"] == "failed" and "at batch_size 3" in row["error"]
    assert "not retried (nothing to halve)" in row["error"]


def test_other_errors_are_untouched(tmp_path):
    env = _env(tmp_path)

    def job_fn(job, workdir):
        raise RuntimeError("node lost")

    with pytest.raises(RuntimeError, match="node lost"):  # transient: Tune retries the trial
        run_seed(env, POINT, 0, job_fn, None)


def test_a_pt_job_retried_at_a_smaller_batch_keeps_its_model_under_that_batch(tmp_path):
    env = _env(tmp_path)
    from tlsearch.search.plan.compile import compile_spec

    (job,) = compile_spec(env.spec, str(tmp_path)).pretrain_jobs
    env = env.model_copy(update={"pretrain_jobs": {pretrain_key(job): job}})
    loader_oom = lambda: TrainingOutOfMemoryError("cuda:0 out of memory (batch_size 64)", 64)  # noqa: E731
    job_fn, batches = _out_of_memory_while(lambda j: j.train.get("batch_size") is None, loader_oom)
    row, pretrained = ensure_pt_row(env, job, job_fn, None)
    assert row["status"] == "ok" and "at batch_size 64: trained at batch_size 32" in row["error"]
    assert pretrained is not None and not pretrained.cache_hit
    assert json.loads(row["config_json"])["train"]["batch_size"] == 32
    # the next FT trial needing it: the recorded batch, the cached model, no OOM'd attempt
    again, cached = ensure_pt_row(env, job, job_fn, None)
    assert cached.cache_hit and cached.checkpoint == pretrained.checkpoint
    assert batches == [None, 32] and again["run_id"] == row["run_id"]


def test_a_pt_job_of_unknown_batch_size_is_reported_not_guessed(tmp_path):
    env = _env(tmp_path)
    from tlsearch.search.plan.compile import compile_spec

    (job,) = compile_spec(env.spec, str(tmp_path)).pretrain_jobs  # the whole pool, no batch
    job_fn, batches = _out_of_memory_while(lambda j: True)  # e.g. a DDP worker's raw OOM
    row, pretrained = ensure_pt_row(env, job, job_fn, None)
    assert pretrained is None and batches == [None]
    assert (
        row["status"] == "failed"
        and "at batch_size unknown; not retried (set a smaller train.batch_size)" in row["error"]
    )


def test_out_of_memory_is_found_in_ray_train_worker_failures():
    train_errors = pytest.importorskip("ray.train")
    group = train_errors.WorkerGroupError(
        "rank 1 failed", {0: ConnectionError("x"), 1: RuntimeError(f"worker: {TORCH_OOM}")}
    )
    oom = gpu_memory.find_out_of_memory(train_errors.ControllerError(group))
    assert oom is not None and TORCH_OOM in oom.text and oom.batch_size is None
    named = RuntimeError("outer")
    named.__cause__ = TrainingOutOfMemoryError("cuda:0 out of memory in a training batch", 32)
    assert gpu_memory.find_out_of_memory(named).batch_size == 32
    from ray.exceptions import OutOfMemoryError as RayHostOOM  # Ray's memory monitor: host RAM

    assert gpu_memory.find_out_of_memory(RayHostOOM("task killed")) is None


class _FakeCuda:
    def __init__(self) -> None:
        self.caps: list[tuple[float, int]] = []

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
        monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                            lambda share, index: self.caps.append((share, index)))  # fmt: skip


@pytest.mark.parametrize(("gpu", "capped"), [(0.25, [(0.25, 0)]), (1, []), (0, [])])
def test_a_fractional_gpu_trial_caps_its_cuda_memory_before_the_job(
    tmp_path, monkeypatch, gpu, capped
):
    import ray.tune

    cuda = _FakeCuda()
    cuda.install(monkeypatch)
    monkeypatch.setattr(ray.tune, "report", lambda *args, **kwargs: None)
    env = _env(tmp_path, resources={"cpu": 1, "gpu": gpu})
    at_job: list = []

    def job_fn(job, workdir):
        at_job.append(list(cuda.caps))
        return fake_job(job, workdir)

    search_trial({"point": {**POINT.as_config(), "seed": 0}}, env, job_fn)
    assert at_job == [capped]


def test_the_share_ray_assigned_wins_over_the_spec(monkeypatch):
    import ray

    class Context:
        def get_assigned_resources(self):
            return {"CPU": 2.0, "GPU": 0.5}

    monkeypatch.setattr(ray, "get_runtime_context", lambda: Context())
    assert gpu_memory.trial_gpu_share(0.25) == 0.5
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_memory.cap_gpu_memory(0.5) is False  # no CUDA: nothing to cap
