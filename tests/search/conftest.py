"""Shared fixtures: one local Ray for the whole session, and small fake-job specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tlsearch.search.spec import SearchSpec

REPO = Path(__file__).resolve().parents[2]
FAKE_JOB = "tests.search.fakes:fake_job"


def start_local_ray(**kwargs: Any) -> None:
    """A 2-CPU local Ray whose workers can import ``tests.search.fakes``."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
            **kwargs,
        )


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray shared by every test that needs it (Ray starts slowly)."""
    ray = pytest.importorskip("ray")
    start_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture
def local_ray(ray_session):
    """The session's Ray, restarted when a multi-node test shut it down."""
    start_local_ray()
    return ray_session


def fake_spec(tmp_path: Path, datasets: dict[str, str] | None = None, **over: Any) -> SearchSpec:
    """A small spec run by the fake job; dataset specs are ``fake://MODE`` with a log folder."""
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
    return SearchSpec.model_validate(data)


def executions(tmp_path: Path) -> list[str]:
    """Lines of the fake job's execution log (one per job actually run)."""
    log = tmp_path / "log" / "executions.log"
    return log.read_text().splitlines() if log.exists() else []
