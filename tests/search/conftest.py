"""Small fake-job specs and a one-rank stand-in for the DDP worker (the session's local Ray
fixtures are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tlsearch.search.plan.spec import SearchSpec

REPO = Path(__file__).resolve().parents[2]
FAKE_JOB = "tests.search.fakes:fake_job"


def fake_spec(tmp_path: Path, datasets: dict[str, str] | None = None, **over: Any) -> SearchSpec:
    """A small spec run by the fake job; dataset specs are ``fake://MODE`` with a log folder."""
    return SearchSpec.model_validate(fake_spec_data(tmp_path, datasets, **over))


def fake_spec_data(
    tmp_path: Path, datasets: dict[str, str] | None = None, **over: Any
) -> dict[str, Any]:
    """:func:`fake_spec` as the YAML mapping (for tests that write the spec file)."""
    log = tmp_path / "log"
    data = {
        "name": "fake",
        "storage": str(tmp_path / "store"),
        "vars": {"log": str(log)},
        "datasets": {
            name: f"fake://{mode}?log={{log}}"
            for name, mode in (datasets or {"A": "ok", "B": "ok"}).items()
        },
        "targets": ["A"],
        "pt_sources": ["B"],
        "scratch": True,
        "ft_sizes": [10],
        "seeds": [0, 1],
        "max_failures": 2,
        "testing": {"job_fn": FAKE_JOB},
    }
    data.update(over)
    return data


def executions(tmp_path: Path) -> list[str]:
    """Lines of the fake job's execution log (one per job actually run)."""
    log = tmp_path / "log" / "executions.log"
    return log.read_text().splitlines() if log.exists() else []


class OneRankContext:
    """Ray Train's context for a one-worker job run in-process (tests of the DDP worker)."""

    def get_world_rank(self) -> int:
        return 0

    def get_world_size(self) -> int:
        return 1


def one_rank_collectives() -> dict[str, Any]:
    """What torch's collectives do in a world of one rank (no process group needed)."""

    def all_gather(outputs, tensor, *args, **kwargs):
        for out in outputs:
            out.copy_(tensor)

    return {
        "all_reduce": lambda tensor, *args, **kwargs: None,
        "broadcast": lambda tensor, *args, **kwargs: None,
        "all_gather": all_gather,
    }


@pytest.fixture
def one_rank(monkeypatch):
    """The DDP worker function run in this process as the only rank, on the CPU."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    monkeypatch.setattr(ray.train, "get_context", lambda: OneRankContext())
    monkeypatch.setattr(ray.train.torch, "get_device", lambda: torch.device("cpu"))
    for name, fn in one_rank_collectives().items():
        monkeypatch.setattr(dist, name, fn)


@pytest.fixture
def two_node_cluster():
    """A head (driver only, no CPU) and two 1-CPU worker nodes on loopback."""
    from ray.cluster_utils import Cluster

    _no_ray_here()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    import ray

    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def _no_ray_here() -> None:
    """No Ray connection in this process (the tests that start their own)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
