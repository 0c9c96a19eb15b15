"""Fake job functions for the search mechanics tests (fast, no training).

Behaviour comes from the dataset's data spec, ``fake://MODE?log=DIR&sleep=S``:

- ``ok``: deterministic metrics from the configuration and seed;
- ``flaky``: raises ``RuntimeError`` the first time each seed-run is attempted (marker files in
  ``log``), then behaves like ``ok``;
- ``baddata``: raises ``ValueError`` (a deterministic data problem);
- ``nan``: a diverged run (non-finite loss).

Every execution appends a line to ``<log>/executions.log``, so tests can count how often each
seed-run really ran. Like the real store, a job "builds" each of its datasets' graphs into
``job.cache_dir`` the first time (a ``meta.json`` under a file lock) and reads them later; it
reports ``graph_cache_hit`` as ``train_run`` does.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def _options(spec: str) -> tuple[str, dict[str, str]]:
    url = urlparse(spec)
    return url.netloc, {k: v[0] for k, v in parse_qs(url.query).items()}


def _score(*parts: object) -> float:
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()
    return 0.05 + int(digest[:6], 16) / 0xFFFFFF * 0.2


def fake_job(job, workdir):
    """Same signature as :func:`tlsearch.jobs.run.run_job`."""
    ref = job.data if job.data is not None else job.mpt_data[0]
    mode, opts = _options(ref.data)
    identity = json.dumps(
        [
            job.kind,
            ref.name,
            job.seed,
            job.strategy,
            job.train.get("learning_rate"),
            ref.size,
            job.pretrained is not None,
        ],
    )
    log = Path(opts.get("log", workdir))
    log.mkdir(parents=True, exist_ok=True)
    with open(log / "executions.log", "a") as fh:
        fh.write(identity + "\n")
    time.sleep(float(opts.get("sleep", 0)))
    Path(workdir).mkdir(parents=True, exist_ok=True)
    (Path(workdir) / "model.pt").write_bytes(b"fake model")
    cache_hits = _fake_graph_cache(job, ref)
    if mode == "baddata":
        raise ValueError(f"dataset {ref.name}: structure 7 has no atoms")
    if mode == "flaky":
        marker = log / ("flaky-" + hashlib.sha256(identity.encode()).hexdigest()[:12])
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("transient failure (node hiccup)")
    if mode == "nan":
        return {
            "diverged": True,
            "val": {"mae": math.nan, "r2": math.nan, "rmse": math.nan},
            "test": {"mae": math.nan, "r2": math.nan, "rmse": math.nan},
            "epochs_run": 1,
        }
    lr = job.train.get("learning_rate") or 1e-3
    value = _score(ref.name, job.strategy, ref.sampling, job.seed) + abs(math.log10(lr) + 3) * 0.1
    metrics = {"mae": value, "r2": 1 - value, "rmse": 1.3 * value, "n": 10}
    return {
        "val": dict(metrics),
        "test": dict(metrics),
        "best_epoch": 4,
        "epochs_run": 5,
        "early_stopped": False,
        "diverged": False,
        "n_train": 9,
        "n_val": 1,
        "n_test": 10,
        "train_seconds": 0.01,
        "train_structures_per_second": 900.0,
        "device": "cpu",
        "graph_cache_hit": cache_hits,
    }


def _fake_graph_cache(job, ref) -> dict[str, bool]:
    """Hit/miss of the job's graph stores, emulated with one marker folder per data spec."""
    if not job.cache_dir:
        return {}
    from tlsearch.storage.locks import file_lock

    root = Path(job.cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for role, spec in (("train", ref.data), ("test", ref.test or f"{ref.data}#test")):
        key = hashlib.sha256(spec.encode()).hexdigest()[:16]
        with file_lock(root / f"{key}.lock"):
            meta = root / key / "meta.json"
            out[role] = meta.is_file()
            if not out[role]:
                meta.parent.mkdir(parents=True, exist_ok=True)
                meta.write_text("{}")
    return out


#: probe_mae of each fake PT source (lower ranks first); sources not listed score 0.5.
FAKE_PROBE = {"B": 0.10, "C": 0.20, "D": 0.30}


def fake_rank(source, checkpoint, job):
    """Same signature as :func:`tlsearch.search.run.prefilter.score_with_trunk`: scores from
    :data:`FAKE_PROBE`, one line per call in ``<log>/rankings.log``."""
    _, opts = _options(job.data.data)
    log = Path(opts["log"])
    log.mkdir(parents=True, exist_ok=True)
    with open(log / "rankings.log", "a") as fh:
        fh.write(json.dumps([source, job.data.name, job.data.size, Path(checkpoint).name]) + "\n")
    probe = FAKE_PROBE.get(source, 0.5)
    return {"probe_mae": probe, "logme": -probe, "baseline_mae": 0.6, "n": job.data.size}
