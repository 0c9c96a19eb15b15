"""Names of jobs and seed-runs, computed from content so the same work has the same name on
every machine, in every attempt, retry and resume.

- a configuration's hash (:func:`recipe_hash`: 16 hex digits of the canonical JSON of its
  recipe, assembled by :func:`tlsearch.search.plan.points.config_hash`) and a seed-run's id
  (:func:`run_id`: ``<config hash>-s<seed>``);
- data identities (:func:`source_identity`, :func:`path_identity`): file contents, not paths;
- a PT job's key (:func:`pretrain_key`): what decides the model, not where or how else it ran.

Each byte of these names is pinned by tests: a change here renames existing results.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import string
from pathlib import Path
from typing import Any

from tlsearch.jobs.config import SCHEMES, JobConfig, absolute_spec
from tlsearch.model.config import model_identity

EXECUTION_FIELDS = {
    "cache_dir",
    "num_workers",
    "cpus_per_worker",
    "gpus_per_worker",
    "label",
    "pt_size",
    "checkpoint_every",
    "resume_uri",
    "max_failures",
}
EXECUTION_TRAIN_FIELDS = {"num_threads", "device", "log_every"}


def stable_hash(value: Any) -> str:
    """sha256 hex of the canonical JSON of ``value``."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def recipe_hash(recipe: dict[str, Any]) -> str:
    """16 hex digits naming a configuration by its whole recipe (point, settings, data)."""
    return stable_hash(recipe)[:16]


def run_id(config_hash: str, seed: int) -> str:
    """A seed-run's id and file name: ``<config hash>-s<seed>``."""
    return f"{config_hash}-s{seed}"


def data_fingerprint(spec: str | None) -> str | None:
    """A hash of the data behind ``spec``: file bytes, a folder's listing, or the spec itself."""
    if spec is None or spec.startswith(SCHEMES) or "://" in spec:
        return spec
    path = Path(spec)
    if path.is_file():
        stat = path.stat()
        return _file_hash(str(path), stat.st_size, stat.st_mtime_ns)
    if path.is_dir():
        entries = sorted(
            (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in path.rglob("*")
            if p.is_file()
        )
        return hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    return spec


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (memoised per path, size and modification time)."""
    stat = os.stat(path)
    return _file_hash(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pretrain_key(job: JobConfig) -> str:
    """20 hex digits identifying the model ``job`` produces.

    A DDP job (``num_workers > 1``) runs the one-process recipe (same global batch, schedule,
    early stopping), but its BatchNorm normalises each rank's slice of a batch, so its model is
    another one: the worker count enters the key then (and only then, so one-process keys are
    unchanged).
    """
    content = job.model_dump(exclude=EXECUTION_FIELDS)
    if job.num_workers > 1:
        content["ddp_workers"] = job.num_workers
    content["train"] = {k: v for k, v in job.train.items() if k not in EXECUTION_TRAIN_FIELDS}
    content["model"] = model_identity(job.model)  # the kernel is not part of it
    for ref in [content.get("data"), *content.get("mpt_data", [])]:
        if ref:
            ref["data"] = data_fingerprint(ref["data"])
            ref["test"] = data_fingerprint(ref["test"])
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def source_identity(text: str | None, values: dict[str, Any], base_dir: str | None) -> Any:
    """A data spec's identity: a ``scheme:``/URI spec as written (``values`` filled in); a local
    file as the sha256 of its bytes; a folder as its files' names and hashes; a pattern with
    ``{trial}``/``{seed}`` as its part below its fixed folder plus every file it matches there.
    """
    if text is None:
        return None
    filled = fill_fields(text, values)
    if filled.startswith(SCHEMES) or "://" in filled:
        return filled
    path = absolute_spec(filled, base_dir or os.getcwd())
    pieces = list(string.Formatter().parse(path))
    if all(field is None for _, field, _, _ in pieces):
        return path_identity(Path(_unescape(path)))
    root = os.path.dirname(pieces[0][0])
    pattern = "".join(glob.escape(lit) + ("*" if f is not None else "") for lit, f, _, _ in pieces)
    below = path[len(_escape(root)) :].lstrip(os.sep)
    matches = sorted(glob.glob(pattern))
    return {
        "pattern": below,
        "files": [[os.path.relpath(m, root), path_identity(Path(m))] for m in matches],
    }


def path_identity(path: Path) -> Any:
    """A file's sha256, a folder's files' names and hashes, or a missing path's name."""
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {"folder": [[p.relative_to(path).as_posix(), file_digest(p)] for p in files]}
    return {"missing": path.name}


def fill_fields(text: str, values: dict[str, Any]) -> str:
    """``text`` with its ``{name}`` fields found in ``values`` filled in and the others kept
    (``{trial}`` stays ``{trial}``); braces stay escaped, so ``.format`` can fill the rest."""
    out = []
    for literal, field, spec, conversion in string.Formatter().parse(text):
        out.append(_escape(literal))
        if field is None:
            continue
        code = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        if field in values:
            out.append(_escape(("{" + code.replace(field, "0", 1) + "}").format(values[field])))
        else:
            out.append("{" + code + "}")
    return "".join(out)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _unescape(text: str) -> str:
    return text.replace("{{", "{").replace("}}", "}")
