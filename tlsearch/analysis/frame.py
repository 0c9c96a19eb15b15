"""Parquet run logs -> one pandas DataFrame of seed-runs (and the plans that say what was due).

A *results path* is either one search folder (``<storage>/<search>``, holding ``runs/``) or a
storage root holding several search folders; :func:`load_runs` reads them all with the canonical
schema. A run that appears in several searches (same ``run_id``: same configuration and seed)
counts once, the latest row winning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from tlsearch.results.store import read_runs
from tlsearch.storage.uri import join, read_text, resolve

logger = logging.getLogger(__name__)

TRANSFER_KINDS = ("finetune", "mpt")


@dataclass
class Results:
    """Seed-run rows of one or more searches, and what their plans asked for."""

    runs: pd.DataFrame
    search_dirs: list[str]
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    specs: dict[str, str] = field(default_factory=dict)
    rehearsal: bool = False  # every row is a rehearsal's (tiny model, 2 epochs): no result

    @property
    def seed_runs(self) -> pd.DataFrame:
        """Rows of seed-runs (PT jobs excluded)."""
        return self.runs[self.runs["kind"] != "pretrain"]

    @property
    def pretrain_runs(self) -> pd.DataFrame:
        return self.runs[self.runs["kind"] == "pretrain"]

    def planned_seeds(self) -> int | None:
        """Seeds per configuration the plans asked for (the largest, if plans differ)."""
        counts = [len(p.get("seeds") or []) for p in self.plans.values()]
        counts = [c for c in counts if c]
        return max(counts) if counts else None


def search_dirs(path: str | Path) -> list[str]:
    """Search folders at ``path``: itself when it holds ``runs/``, else its children that do."""
    fs, root = resolve(path)
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no results folder at {path}")
    if fs.get_file_info(f"{root}/runs").type == pafs.FileType.Directory:
        return [str(path)]
    children = fs.get_file_info(pafs.FileSelector(root))
    found = [
        join(path, Path(c.path).name)
        for c in sorted(children, key=lambda c: c.path)
        if c.type == pafs.FileType.Directory
        and fs.get_file_info(f"{c.path}/runs").type == pafs.FileType.Directory
    ]
    if not found:
        raise FileNotFoundError(
            f"{path} holds no search results (expected {path}/runs/ or {path}/<search>/runs/)"
        )
    return found


def normalise(runs: pd.DataFrame) -> pd.DataFrame:
    """Canonical values for grouping: scratch rows get strategy ``scratch``; dedup by run_id."""
    runs = runs.copy()
    runs.loc[runs["kind"] == "scratch", "strategy"] = "scratch"
    runs["lr"] = runs["lr"].astype(float)
    for column in ("ft_size", "pt_size"):
        runs[column] = runs[column].astype("Int64")
    if "finished_at" in runs:
        runs = runs.sort_values("finished_at", na_position="first", kind="stable")
    duplicated = runs.duplicated("run_id", keep="last")
    if duplicated.any():
        logger.info("%d run(s) recorded in more than one search counted once", duplicated.sum())
    return runs[~duplicated].reset_index(drop=True)


def load_runs(path: str | Path, search: str | None = None) -> Results:
    """Every row under ``path`` (one search folder or a storage root) as :class:`Results`.

    Args:
        path: a search folder or a storage root (local, ``s3://``, ``gs://``).
        search: keep only the search of this name.
    """
    dirs = search_dirs(path)
    frames, plans, specs = [], {}, {}
    for directory in dirs:
        name = Path(str(directory).rstrip("/")).name
        if search is not None and name != search:
            continue
        table = read_runs(join(directory, "runs"))
        frame = table.to_pandas()
        frame["search_dir"] = str(directory)
        frames.append(frame)
        plan = read_text(join(directory, "plan.json"))
        if plan:
            plans[name] = json.loads(plan)
        spec = read_text(join(directory, "spec.yaml"))
        if spec:
            specs[name] = spec
    if not frames:
        raise FileNotFoundError(f"no search named {search!r} under {path}")
    runs = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    rehearsal = check_rehearsal(runs)
    return Results(normalise(runs), [str(d) for d in dirs], plans, specs, rehearsal)


def check_rehearsal(runs: pd.DataFrame) -> bool:
    """Whether every row is a rehearsal's; rehearsal rows mixed with real ones are refused.

    Raises:
        ValueError: some rows come from a rehearsal (``tlsearch search --rehearse``) and some
            do not, naming the rehearsal's search folders.
    """
    if "rehearsal" not in runs or runs.empty:
        return False
    flags = runs["rehearsal"].map(lambda v: v is True or v == 1)
    if flags.all():
        logger.warning(
            "these are rehearsal rows (tiny model, 2 epochs): they check a plan, their metrics "
            "are not results"
        )
        return True
    if flags.any():
        folders = sorted(set(runs.loc[flags, "search_dir"]))
        raise ValueError(
            f"{int(flags.sum())} rehearsal row(s) (from {', '.join(folders)}) are mixed with "
            f"{int((~flags).sum())} real one(s): rehearsal metrics (tiny model, 2 epochs) are "
            "not results; analyse the real search folder alone, or the rehearsal alone"
        )
    return False
