"""Shared test fixtures: paths, tiny hand-built structures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tlsearch.structures.records import StructureRecord

REPO = Path(__file__).resolve().parents[1]
SHARED_PAPER = REPO.parent / "shared" / "data" / "paper"


@pytest.fixture(autouse=True)
def _restore_tlsearch_logger():
    """Undo what a CLI call in a test did to the ``tlsearch`` loggers (a console handler,
    ``propagate = False`` or a raised level hide records from ``caplog`` in later tests)."""
    logger = logging.getLogger("tlsearch")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    children = {
        name: child.level
        for name, child in logging.root.manager.loggerDict.items()
        if name.startswith("tlsearch.") and isinstance(child, logging.Logger)
    }
    yield
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]
    for name, child in logging.root.manager.loggerDict.items():
        if name.startswith("tlsearch.") and isinstance(child, logging.Logger):
            child.setLevel(children.get(name, logging.NOTSET))


@pytest.fixture
def paper_data() -> Path:
    """The paper's real data beside the repo (``../shared/data/paper``); skip when absent."""
    if not SHARED_PAPER.is_dir():
        pytest.skip("../shared/data/paper is not present")
    return SHARED_PAPER


def rocksalt(a: float = 5.64, species: tuple[str, str] = ("Na", "Cl"), rid: str = "nacl"):
    """Conventional-cell-free primitive rock salt (2 atoms, fcc lattice)."""
    lattice = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    return StructureRecord(rid, lattice, frac, species, {"target": 1.0})


def simple_cubic(a: float = 3.0, rid: str = "sc") -> StructureRecord:
    """One atom in a cubic cell: every bond is a self-loop to a periodic image."""
    return StructureRecord(rid, np.eye(3) * a, np.zeros((1, 3)), ("Po",), {"target": 0.5})


@pytest.fixture
def tiny_records() -> list[StructureRecord]:
    """Three small hand-built structures of different sizes."""
    perov = StructureRecord(
        "perov",
        np.eye(3) * 3.9,
        np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
        ("Sr", "Ti", "O", "O", "O"),
        {"target": -2.0},
    )
    return [rocksalt(), simple_cubic(), perov]


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
