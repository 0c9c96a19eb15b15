"""What a search ran, what is left and what failed: from ``plan.json`` and the Parquet rows.

"Nothing lost" reads ``planned == completed + failed + diverged + skipped`` once a search has
finished (``skipped``: seed-runs ``search.prefilter`` did not run), with no duplicate ``run_id``
(file names make duplicates impossible; this checks it).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from tlsearch.results.schema import CONFIG_KEYS
from tlsearch.results.store import read_runs
from tlsearch.search.plan.records import read_plan
from tlsearch.storage.uri import join, resolve

TABLE_COLUMNS = (
    *CONFIG_KEYS,
    "seeds",
    "failed",
    "diverged",
    "skipped",
    "test_mae",
    "test_mae_std",
    "test_r2",
)


@dataclass
class SearchStatus:
    """Counts of one search's seed-runs and PT jobs, and a per-configuration table."""

    search_dir: str
    planned: int | None
    planned_pretrain: int | None
    counts: dict[str, int]
    pretrain_counts: dict[str, int]
    duplicates: int
    table: list[dict[str, Any]] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return self.counts.get("ok", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def diverged(self) -> int:
        return self.counts.get("diverged", 0)

    @property
    def skipped(self) -> int:
        """Seed-runs ``search.prefilter`` did not run (recorded as such, not lost)."""
        return self.counts.get("skipped", 0)

    @property
    def recorded(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int | None:
        return None if self.planned is None else max(self.planned - self.recorded, 0)

    def counts_line(self) -> str:
        """``planned N, completed N, failed N, diverged N, [skipped N, ]remaining N``."""
        planned = "?" if self.planned is None else self.planned
        remaining = "?" if self.remaining is None else self.remaining
        skipped = f"skipped {self.skipped}, " if self.skipped else ""
        return (
            f"planned {planned}, completed {self.completed}, failed {self.failed}, "
            f"diverged {self.diverged}, {skipped}remaining {remaining}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "search_dir": self.search_dir,
            "planned": self.planned,
            "completed": self.completed,
            "failed": self.failed,
            "diverged": self.diverged,
            "skipped": self.skipped,
            "remaining": self.remaining,
            "duplicates": self.duplicates,
            "pretrain": {"planned": self.planned_pretrain, **self.pretrain_counts},
            "configurations": self.table,
        }


def search_status(path: str) -> SearchStatus:
    """Status of the search folder ``path`` (or of its ``runs/`` folder).

    Raises:
        FileNotFoundError: there is no such folder.
    """
    path = str(path).rstrip("/")
    search_dir = path[: -len("/runs")] if path.endswith("/runs") else path
    fs, inside = resolve(search_dir)
    if fs.get_file_info(inside).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no search folder {search_dir}")
    plan = read_plan(search_dir)
    rows = read_runs(join(search_dir, "runs")).to_pylist()
    ids = Counter(r["run_id"] for r in rows)
    seed_runs = [r for r in rows if r["kind"] != "pretrain"]
    pt_rows = [r for r in rows if r["kind"] == "pretrain"]
    return SearchStatus(
        search_dir=search_dir,
        planned=None if plan is None else plan.planned_seed_runs,
        planned_pretrain=None if plan is None else plan.planned_pretrain_jobs,
        counts=dict(Counter(r["status"] for r in seed_runs)),
        pretrain_counts=dict(Counter(r["status"] for r in pt_rows)),
        duplicates=sum(n - 1 for n in ids.values()),
        table=configuration_table(seed_runs),
    )


def resume_summary(status: SearchStatus) -> str:
    """What a resume finds: ``N seed-runs already recorded (...), M to run; PT jobs: ...``."""
    counts = ", ".join(f"{name} {n}" for name, n in sorted(status.counts.items()))
    remaining = "?" if status.remaining is None else status.remaining
    pt_done = sum(status.pretrain_counts.values())
    return (
        f"{status.recorded} seed-run(s) already recorded"
        + (f" ({counts})" if counts else "")
        + f", {remaining} to run; PT jobs: {pt_done} of {_cell(status.planned_pretrain)} recorded"
    )


def configuration_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per configuration: its axes, seed counts and mean test metrics over ok seeds."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["config_hash"] or row["run_id"]].append(row)
    table = []
    for members in groups.values():
        first = members[0]
        ok = [r for r in members if r["status"] == "ok"]
        maes = [r["test_mae"] for r in ok if r["test_mae"] is not None]
        r2s = [r["test_r2"] for r in ok if r["test_r2"] is not None]
        line = {k: first[k] for k in TABLE_COLUMNS[:8]}
        line.update(
            seeds=len(ok),
            failed=sum(r["status"] == "failed" for r in members),
            diverged=sum(r["status"] == "diverged" for r in members),
            skipped=sum(r["status"] == "skipped" for r in members),
            test_mae=statistics.fmean(maes) if maes else None,
            test_mae_std=statistics.stdev(maes) if len(maes) > 1 else None,
            test_r2=statistics.fmean(r2s) if r2s else None,
        )
        table.append(line)
    return sorted(table, key=_order)


def _order(line: dict[str, Any]) -> tuple:
    mae = line["test_mae"]
    return (
        str(line["ft_target"]),
        line["ft_size"] or 0,
        line["kind"] != "scratch",
        math.inf if mae is None else mae,
    )


def format_status(status: SearchStatus, max_rows: int = 200) -> str:
    """A readable report: counts, PT jobs, then the configuration table."""
    pt = status.pretrain_counts
    lines = [
        f"search: {status.search_dir}",
        f"seed-runs: {status.counts_line()}",
        f"PT jobs: planned {_cell(status.planned_pretrain)}, completed {pt.get('ok', 0)}, "
        f"failed {pt.get('failed', 0)}, diverged {pt.get('diverged', 0)}",
    ]
    if status.duplicates:
        lines.append(f"WARNING: {status.duplicates} duplicate run_id row(s)")
    if status.table:
        lines += ["", *_text_table(status.table[:max_rows])]
        if len(status.table) > max_rows:
            lines.append(f"... {len(status.table) - max_rows} more configurations")
    return "\n".join(lines)


def _text_table(rows: list[dict[str, Any]]) -> list[str]:
    cells = [[_cell(row[c]) for c in TABLE_COLUMNS] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(TABLE_COLUMNS)]
    header = "  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return [header, "  ".join("-" * w for w in widths), *body]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
