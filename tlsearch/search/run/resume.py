"""``--resume`` safety: what changed since a search started, and its concurrency on restore.

A resumed search restores its Tune experiments: their configurations are the ones they started
with (Tune cannot change a restored search space), trials that finished never run again, and
every seed-run is named by its run id (:func:`tlsearch.search.plan.points.config_hash`: the
configuration, the recipe and the data). :func:`check_resume` compares the spec with the
``spec.yaml`` the search started with, and each recorded seed-run's run id with the one it
would get now. Any difference is refused (:class:`SpecChangedError`, naming what changed)
unless ``allow_changed`` (``--allow-changed-spec``); run settings (:data:`RUN_SETTINGS`) may
change freely. Changed configurations are refused even then: the restored experiments could
never finish them.

:func:`capped` makes ``max_concurrent`` hold for a restored experiment, which Tune does not do
by itself: the restored search algorithm keeps the limit it was saved with (see
:func:`tlsearch.search.run.restore_limits.cap_restored` for that part), and trials that were pending
when the search stopped start again without any limit. :func:`capped` wraps the trial function
in :func:`concurrency_slot`, which lets at most ``max_concurrent`` trials of the search work at
once (file locks: one machine or shared storage; on object stores, per node).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from tlsearch.results.store import read_runs
from tlsearch.search.plan.compile import SearchPlan, compile_spec, is_pretrain_point
from tlsearch.search.plan.points import Point, config_hash
from tlsearch.search.plan.spec import SearchSpec
from tlsearch.storage.uri import is_remote, join, read_text, resolve

logger = logging.getLogger(__name__)

#: Spec keys that say how a search runs, not what it computes: they may change on resume.
#: ``max_concurrent`` applies to the restored experiments (:func:`cap_restored`).
RUN_SETTINGS = (
    "description",
    "max_concurrent",
    "max_failures",
    "checkpoint_every",
    "pretrain.checkpoint_every",
    "tensorboard",
    "resources",
    "pretrain.resources",
    "graph_cache",
)
SHOWN_CHANGES = 25
SLOT_POLL_S = 1.0


class SpecChangedError(ValueError):
    """``--resume`` with a spec (or data) other than the one the search started with."""


# --- what changed -------------------------------------------------------------------------------


def check_resume(
    search_dir: str,
    plan: SearchPlan,
    trial_spec: SearchSpec,
    base_dir: str,
    allow_changed: bool = False,
) -> None:
    """Refuse to resume ``search_dir`` with another spec or data than it started with.

    Args:
        search_dir: ``<storage>/<name>``.
        plan: the plan of the spec given now (``plan.spec`` is what ``spec.yaml`` stores).
        trial_spec: that spec as trials get it
            (:func:`tlsearch.search.plan.points.resolve_datasets`).
        base_dir: the folder relative paths are resolved against.
        allow_changed: ``--allow-changed-spec``: resume anyway (logged; the stored
            ``spec.yaml`` and ``plan.json`` are kept as ``spec.<time>.yaml`` and
            ``plan.<time>.json``).

    Raises:
        SpecChangedError: something changed and ``allow_changed`` is False, or the planned
            configurations of an experiment that already ran changed.
    """
    stored = read_text(join(search_dir, "spec.yaml"))
    if stored is None:
        logger.info("no spec.yaml in %s: nothing to compare the spec with", search_dir)
        return
    old, readable = _stored_spec(stored, join(search_dir, "spec.yaml"))
    new = _dump(plan.spec)
    changes = spec_changes(old, new)
    settings = [c for c in changes if _is_setting(c[0])]
    changes = [c for c in changes if not _is_setting(c[0])]
    if settings:
        logger.info("run settings changed since the search started: %s", _lines(settings, "; "))
    rerun, recorded = rerun_seed_runs(search_dir, trial_spec)
    if not changes and not rerun:
        return
    where = join(search_dir, "spec.yaml")
    what = _what_changed(changes, rerun, recorded, where)
    if readable is not None:
        moved = changed_experiments(search_dir, readable, plan, base_dir)
        if moved:
            raise SpecChangedError(
                f"cannot resume search {plan.spec.name!r}: {what}; the planned configurations "
                f"of experiment(s) that already ran changed ({'; '.join(moved)}), and Tune "
                "cannot change a restored experiment's configurations. Run the changed spec as "
                "a new search (--name; its PT models are reused from <storage>/pretrained), or "
                f"resume with the spec in {where}"
            )
    if not allow_changed:
        raise SpecChangedError(
            f"not resuming search {plan.spec.name!r}: {what}. Resume with the spec it started "
            f"with ({where}), run the new one as a new search (--name), or pass "
            "--allow-changed-spec to resume anyway (finished trials keep their rows; the others "
            "run with the new spec under their new run ids)"
        )
    logger.warning("resuming search %s with a changed spec (--allow-changed-spec): %s",
                   plan.spec.name, what)  # fmt: skip
    keep_previous(search_dir)


def _what_changed(
    changes: list[tuple[str, Any, Any]], rerun: int, recorded: int, where: str
) -> str:
    parts = []
    if changes:
        parts.append(f"the spec differs from {where}: {_lines(changes, '; ')}")
    if rerun:
        why = "their configuration, recipe or data changed"
        if not changes:
            why = (
                "the spec is the same, so the data files they read changed, or they were "
                "recorded by a tlsearch that named runs differently"
            )
        parts.append(f"{rerun} of {recorded} recorded seed-run(s) would run again ({why})")
    elif recorded:
        parts.append(f"the run ids of all {recorded} recorded seed-run(s) are unchanged")
    return "; ".join(parts)


def _stored_spec(text: str, where: str) -> tuple[dict[str, Any], SearchSpec | None]:
    """The stored spec as this version dumps it (defaults of keys added since filled in), and
    the spec itself; the raw mapping and None when it no longer validates.

    Raises:
        ValueError: the file is not a YAML mapping (damaged); the message names it.
    """
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(_unreadable_spec(where, f"not valid YAML{at}: {problem}")) from None
    if not isinstance(raw, dict):
        raise ValueError(_unreadable_spec(where, f"a YAML {type(raw).__name__}, not a mapping"))
    try:
        spec = SearchSpec.model_validate(raw)
    except ValueError as exc:
        logger.warning("the stored spec.yaml does not validate any more (%s); comparing keys",
                       " ".join(str(exc).split())[:300])  # fmt: skip
        return raw, None
    return _dump(spec), spec


def _unreadable_spec(where: str, problem: str) -> str:
    return (
        f"the stored spec {where} is damaged ({problem}); --resume compares the spec with it. "
        "Restore it (an earlier copy, or the spec the search started with), or remove it to "
        "resume without the comparison"
    )


def _dump(spec: SearchSpec) -> dict[str, Any]:
    """What ``spec.yaml`` holds, as plain YAML values."""
    return yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))


class _Unset:
    def __repr__(self) -> str:
        return "unset"


UNSET = _Unset()


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old, new)`` for every leaf that differs (lists compare whole; a key on
    one side only is :data:`UNSET` on the other)."""
    before, after = _flat(old), _flat(new)
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, UNSET), after.get(key, UNSET)
        if a != b:
            out.append((key, a, b))
    return out


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by dotted key; an empty mapping has none (``train: {}`` = no ``train`` keys)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _is_setting(key: str) -> bool:
    return any(key == s or key.startswith(s + ".") for s in RUN_SETTINGS)


def _lines(changes: list[tuple[str, Any, Any]], sep: str) -> str:
    shown = [f"{key}: {_short(a)} -> {_short(b)}" for key, a, b in changes[:SHOWN_CHANGES]]
    if len(changes) > SHOWN_CHANGES:
        shown.append(f"... {len(changes) - SHOWN_CHANGES} more")
    return sep.join(shown)


def _short(value: Any) -> str:
    text = "unset" if value is UNSET else json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def rerun_seed_runs(search_dir: str, trial_spec: SearchSpec) -> tuple[int, int]:
    """``(changed, recorded)``: recorded seed-runs whose run id is not the one their
    configuration gets now (it would run again under the new one), of all recorded ones."""
    columns = ["run_id", "config_hash", "kind", "ft_target", "ft_size", "pt_source",
               "pt_size", "strategy", "sampling", "lr"]  # fmt: skip
    rows = read_runs(join(search_dir, "runs"), columns).to_pylist()
    rows = [r for r in rows if r["kind"] != "pretrain"]
    now: dict[tuple, str | None] = {}
    changed = 0
    for row in rows:
        key = tuple(row[c] for c in columns[2:])
        if key not in now:
            now[key] = _hash_now(trial_spec, row)
        changed += now[key] != row["config_hash"]
    return changed, len(rows)


def _hash_now(spec: SearchSpec, row: dict[str, Any]) -> str | None:
    point = Point(
        kind=row["kind"],
        target=row["ft_target"],
        ft_size=row["ft_size"],
        sampling=row["sampling"],
        lr=float(row["lr"]) if row["lr"] is not None else 1e-3,
        pt_source=row["pt_source"],
        pt_size=row["pt_size"],
        strategy=row["strategy"],
    )
    try:
        return config_hash(spec, point)
    except (KeyError, ValueError):  # a dataset or PT source the spec no longer has
        return None


def changed_experiments(
    search_dir: str, old_spec: SearchSpec, plan: SearchPlan, base_dir: str
) -> list[str]:
    """Experiments with Tune state whose planned configurations differ between the stored spec
    and ``plan`` (``"main: 4 added, 2 removed"``)."""
    from ray import tune

    before = {e.name: e for e in compile_spec(old_spec, base_dir).experiments}
    after = {e.name: e for e in plan.experiments}
    out = []
    for name, old in before.items():
        if not tune.Tuner.can_restore(join(search_dir, "tune", name)):
            continue
        new = after.get(name)
        if new is None:
            out.append(f"{name}: no longer planned")
            continue
        if old.algorithm != new.algorithm or old.num_samples != new.num_samples:
            out.append(f"{name}: {old.algorithm} x{old.num_samples} -> "
                       f"{new.algorithm} x{new.num_samples}")  # fmt: skip
            continue
        a, b = _configurations(old), _configurations(new)
        if a != b:
            out.append(f"{name}: {len(b - a)} configuration(s) added, {len(a - b)} removed")
    return out


def _configurations(experiment: Any) -> set[str]:
    if experiment.algorithm != "grid":
        return {json.dumps(experiment.space, sort_keys=True, default=repr)}
    points = (p for p in experiment.points if not is_pretrain_point(p))
    return {json.dumps(p, sort_keys=True) for p in points}


def keep_previous(search_dir: str) -> None:
    """Copy ``spec.yaml`` and ``plan.json`` to ``spec.<UTC time>.yaml`` / ``plan.<time>.json``."""
    fs, path = resolve(search_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for name in ("spec.yaml", "plan.json"):
        text = read_text(join(search_dir, name))
        if text is None:
            continue
        stem, ext = name.split(".")
        with fs.open_output_stream(f"{path}/{stem}.{stamp}.{ext}") as out:
            out.write(text.encode("utf-8"))


# --- concurrency on restore ---------------------------------------------------------------------


def capped(trial_fn: Callable[..., None], max_concurrent: int) -> Callable[..., None]:
    """``trial_fn`` run only while it holds one of ``max_concurrent`` slots of its search."""

    @functools.wraps(trial_fn)  # the same name: Tune checks it on restore
    def trial(config: dict[str, Any], env: Any, job_fn: Any = None) -> None:
        with concurrency_slot(slot_folder(env), max_concurrent):
            trial_fn(config, env, job_fn)

    return trial


def slot_folder(env: Any) -> Path:
    """Where a search's slot locks live: its folder (local storage, NFS included); per node
    on object stores."""
    if is_remote(env.spec.storage):
        return Path(tempfile.gettempdir()) / "tlsearch-locks" / env.spec.name
    return Path(resolve(join(env.search_dir, "locks"))[1])


@contextlib.contextmanager
def concurrency_slot(folder: Path, slots: int, poll_s: float = SLOT_POLL_S) -> Iterator[int]:
    """Hold one of ``slots`` file locks in ``folder`` (waiting for one to be free); yields its
    number. A process that dies releases its slot."""
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for number in range(slots):
            handle = open(folder / f"slot-{number}.lock", "a+")  # noqa: SIM115 (held below)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield number
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if not waited:
            logger.info("waiting for one of %d trial slot(s) (max_concurrent)", slots)
            waited = True
        time.sleep(poll_s)
