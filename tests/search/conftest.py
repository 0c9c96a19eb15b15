"""Small fake-job specs (the session's local Ray fixtures are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlsearch.search.spec import SearchSpec

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
