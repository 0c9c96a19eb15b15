"""Every data file a search plan reads is checked once by the driver, before anything runs.

Without this, a missing file, a missing ``data_home`` or a ``matminer:`` download on a node
without internet surfaces as one failed row per seed-run, hours into a search.
:func:`check_plan_data` walks the compiled plan (every seed-run's job, every PT job, every
checkpoint a source names) and raises :class:`DataUnavailableError` listing every problem:

- a local ``data`` / ``test`` path (file or id_prop folder) that does not exist;
- ``matminer:CODE``: matminer's file (``<data_home>/<dataset>.json.gz``) is not there and the
  server it comes from cannot be reached; the paper's EBG also needs its Materials Project
  structures (cached, or mp-api + ``MP_API_KEY`` + network);
- ``jarvis:dft_2d``: no local copy in ``data_home`` (or jarvis-tools' folder) and figshare
  cannot be reached;
- a ``data_home`` that does not exist, where the data would have to be downloaded without
  network.

``generated:`` / ``generated2d:`` need nothing; other ``scheme://`` specs (object stores, the
tests' fake data) are not checked. Network probes (:func:`network_reachable`) happen only for
datasets not found locally.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from tlsearch.jobs.config import DataRef, absolute_spec
from tlsearch.search.plan.compile import SearchPlan, is_pretrain_point
from tlsearch.search.plan.points import Point, build_job, data_ref, sources_for
from tlsearch.search.plan.spec import SearchSpec

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
#: Where mp-api fetches the EBG structures from.
MP_API_URL = "https://api.materialsproject.org"
SHOWN_USERS = 3
OFFLINE_HINT = (
    "On a node without internet, run with --offline (matminer codes read the paper's files "
    "under vars.paper, see search_spaces/README.md) or copy the file there first"
)
_PROBED: dict[str, bool] = {}


class DataUnavailableError(ValueError):
    """A search's plan reads data that is not there (and cannot be fetched)."""


@dataclass
class _Need:
    """One data spec the plan reads and what reads it."""

    dataset: str
    role: str  # data or test
    spec: str
    target: str | None
    data_home: str | None
    users: list[str] = field(default_factory=list)


def check_plan_data(plan: SearchPlan, spec: SearchSpec, base_dir: str) -> None:
    """Raise :class:`DataUnavailableError` naming every piece of data ``plan`` cannot read.

    Args:
        plan: the compiled plan.
        spec: the spec as trials get it (vars filled in, absolute paths).
        base_dir: the folder relative paths are resolved against.
    """
    needs: dict[tuple[str, str, str | None, str | None], _Need] = {}
    for user, ref in planned_refs(plan, spec, base_dir):
        for role in ("data", "test"):
            text = getattr(ref, role)
            if text is None:
                continue
            key = (role, text, ref.target, ref.data_home)
            need = needs.setdefault(key, _Need(ref.name, role, text, ref.target, ref.data_home))
            need.users.append(user)
    problems = [p for need in needs.values() if (p := _problem(need)) is not None]
    problems += _missing_checkpoints(spec, base_dir)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise DataUnavailableError(
            f"search {spec.name!r}: {len(problems)} data problem(s), nothing was started:\n{listed}"
        )
    logger.info("data check: %d data spec(s) of the plan are readable", len(needs))


def planned_refs(
    plan: SearchPlan, spec: SearchSpec, base_dir: str
) -> Iterator[tuple[str, DataRef]]:
    """``(who reads it, DataRef)`` for every seed-run and PT job of ``plan``."""
    for experiment in plan.experiments:
        if experiment.algorithm == "grid":
            for raw in experiment.points:
                if is_pretrain_point(raw):
                    continue
                point = Point.from_config(raw, spec)
                seeds = [int(raw["seed"])] if "seed" in raw else experiment.seeds
                for seed in seeds:
                    job = build_job(spec, point, seed, base_dir)
                    assert job.data is not None
                    yield _who(point.target, point.ft_size, seed, point.kind), job.data
        else:
            space = experiment.space
            for seed in experiment.seeds:
                target, size = str(space["target"]), space["ft_size"]
                ref = data_ref(spec, target, size, seed, "random", base_dir)
                yield _who(target, size, seed, "transfer"), ref
    for job in plan.pretrain_jobs:
        who = f"PT job {job.label} (size {job.pt_size or 'all'}, seed {job.seed})"
        for ref in [job.data, *job.mpt_data]:
            if ref is not None:
                yield who, ref


def _who(target: str, size: int | None, seed: int, kind: str) -> str:
    return f"{kind} seed-run {target} ft_size {size if size is not None else 'all'} seed {seed}"


def _problem(need: _Need) -> str | None:
    text = need.spec
    where = f"dataset {need.dataset} ({need.role}: {text})"
    if text.startswith(("generated:", "generated2d:")) or "://" in text:
        return None
    if text.startswith("matminer:"):
        return _matminer_problem(need, where)
    if text.startswith("jarvis:"):
        return _jarvis_problem(need, where)
    if not Path(text).exists():
        return f"{where}: no such file or folder; needed by {_users(need)}"
    return None


def _users(need: _Need) -> str:
    shown = ", ".join(need.users[:SHOWN_USERS])
    more = len(need.users) - SHOWN_USERS
    return shown + (f" and {more} more" if more > 0 else "")


def _home_problem(need: _Need, where: str, what: str) -> str | None:
    if need.data_home is None or Path(need.data_home).exists():
        return None
    return (
        f"{where}: its data_home {need.data_home} does not exist and {what}; needed by "
        f"{_users(need)}"
    )


def _matminer_problem(need: _Need, where: str) -> str | None:
    from matminer.datasets.utils import _get_data_home

    from tlsearch.structures import matminer_source, mp_structures

    try:
        dataset = matminer_source.resolve_dataset(need.spec.partition(":")[2], need.target)
    except ValueError as exc:
        return f"{where}: {exc}"
    metadata = matminer_source.matminer_metadata()[dataset.name]
    home = _get_data_home(need.data_home)
    file = Path(home) / f"{dataset.name}.{metadata['file_type']}"
    url = str(metadata["url"])
    missing = []
    if not file.is_file():
        missing.append((f"matminer's file {file} is not there", url))
    if dataset.structure_column is None and not mp_structures.cache_path(home).is_file():
        why = None if mp_structures.mp_api_available() else "mp-api is not installed"
        if why is None and not os.environ.get("MP_API_KEY"):
            why = "MP_API_KEY is not set"
        if why is not None:
            refusal = mp_structures.refusal(dataset.name, why, home)
            return f"{where}: {' '.join(str(refusal).split())}; needed by {_users(need)}"
        missing.append((f"its Materials Project structures are not cached in {home}", MP_API_URL))
    unreachable = [(why, u) for why, u in missing if not network_reachable(u)]
    if not unreachable:
        for why, u in missing:
            logger.info("%s: %s; it will be downloaded from %s", where, why, _host(u))
        return None
    why = "; ".join(f"{w} and {_host(u)} cannot be reached" for w, u in unreachable)
    home_problem = _home_problem(need, where, "the data cannot be downloaded")
    if home_problem:
        return home_problem
    return (
        f"{where} (matminer dataset {dataset.name}): {why} (no internet on this node?). "
        f"{OFFLINE_HINT} ({file}); needed by {_users(need)}"
    )


def _jarvis_problem(need: _Need, where: str) -> str | None:
    from tlsearch.structures import jarvis_2d

    if need.spec.partition(":")[2] != jarvis_2d.DATASET:
        return f"{where}: only jarvis:dft_2d is supported"
    url, name = jarvis_2d.figshare_file()
    store = Path(need.data_home) if need.data_home else jarvis_2d.default_store_dir()
    if jarvis_2d.find_local_copy(store, name) is not None:
        return None
    if network_reachable(url):
        logger.info("%s: no local copy in %s; it will be downloaded from %s",
                    where, store, _host(url))  # fmt: skip
        return None
    home_problem = _home_problem(need, where, f"{_host(url)} cannot be reached")
    if home_problem:
        return home_problem
    fetch = jarvis_2d.missing_error(store, f"{_host(url)} cannot be reached")
    return f"{where}: {fetch}; or run with --offline. Needed by {_users(need)}"


def _missing_checkpoints(spec: SearchSpec, base_dir: str) -> list[str]:
    used = {s.name: s for t in spec.targets for s in sources_for(spec, t)}
    problems = []
    for source in used.values():
        if source.kind != "checkpoint" or source.checkpoint is None:
            continue
        path = absolute_spec(str(source.checkpoint), base_dir)
        if "://" not in path and not Path(path).exists():
            problems.append(f"PT source {source.name}: checkpoint {path} does not exist")
    return problems


def _host(url: str) -> str:
    return urlparse(url).hostname or url


def network_reachable(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``url``'s host accepts a TCP connection (remembered per host and port)."""
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    key = f"{host}:{port}"
    if key not in _PROBED:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                _PROBED[key] = True
        except OSError:
            _PROBED[key] = False
    return _PROBED[key]
