"""The one canonical schema of a seed-run row, and how a row dict becomes a one-row table.

Every seed-run (one configuration, one seed) is one row; every pre-training job is one row too
(``kind == "pretrain"``). Metrics without a suffix (the headline ``test_mae``) are in the units the
model trains in: with a target scaler, the dataset's normalised units (one scaler per dataset,
fitted on its non-test pool before any sample is drawn, so all rows of one target share them);
with ``normalise: none``, the data's own units (the paper's shared files are already
normalised). ``*_phys`` columns hold physical units and are filled only when the run fitted a
target scaler. See :mod:`tlsearch.search.run.rows`.

Schema evolution: add only nullable columns, at the end, and bump :data:`SCHEMA_VERSION`. Readers
always pass :data:`RUN_SCHEMA` to ``pyarrow.dataset``, so files written before a column existed
read with nulls in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

#: 2: wall_seconds, graph_cache_hits/misses, pt_cache_hit; 3: rehearsal, data_note;
#: 4: test_{r2,mae,rmse}_last_epoch
SCHEMA_VERSION = "4"

KINDS = ("scratch", "pretrain", "finetune", "mpt")
#: ``skipped``: a seed-run ``search.prefilter`` did not run (``error`` says why)
STATUSES = ("ok", "failed", "diverged", "skipped")
METRIC_NAMES = ("r2", "mae", "rmse")

_METRIC_FIELDS = [
    pa.field(f"{part}_{name}{suffix}", pa.float64())
    for suffix in ("", "_phys")
    for part in ("test", "val")
    for name in METRIC_NAMES
]

RUN_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("search_name", pa.string()),
        pa.field("trial_id", pa.string()),
        pa.field("config_hash", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("kind", pa.string()),
        pa.field("pt_source", pa.string()),
        pa.field("pt_size", pa.int64()),
        pa.field("pt_run_id", pa.string()),
        pa.field("ft_target", pa.string()),
        pa.field("ft_size", pa.int64()),
        pa.field("strategy", pa.string()),
        pa.field("sampling", pa.string()),
        pa.field("lr", pa.float64()),
        pa.field("batch_size", pa.int64()),
        pa.field("epochs_run", pa.int64()),
        pa.field("best_epoch", pa.int64()),
        pa.field("early_stopped", pa.bool_()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        *_METRIC_FIELDS,
        pa.field("n_train", pa.int64()),
        pa.field("n_val", pa.int64()),
        pa.field("n_test", pa.int64()),
        pa.field("train_seconds", pa.float64()),
        pa.field("structures_per_second", pa.float64()),
        pa.field("device", pa.string()),
        pa.field("node", pa.string()),
        pa.field("tlsearch_version", pa.string()),
        pa.field("config_json", pa.string()),
        pa.field("checkpoint_uri", pa.string()),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        # version 2: where a run's time went and what it reused (``tlsearch bench search``)
        pa.field("wall_seconds", pa.float64()),  # the whole job in its trial, row write aside
        pa.field("graph_cache_hits", pa.int64()),  # graph stores read from the cache
        pa.field("graph_cache_misses", pa.int64()),  # graph stores this job built
        pa.field("pt_cache_hit", pa.bool_()),  # PT rows: model reused, not trained here
        # version 3: rehearsals (tiny model, 2 epochs) and where the data came from
        pa.field("rehearsal", pa.bool_()),  # true: a rehearsal row, never a result
        pa.field("data_note", pa.string()),  # e.g. "offline: test set is a STAND-IN (...)"
        # version 4: the test metrics of the final epoch's weights (the paper's test predictions
        # came from them), in the headline's units; equal to test_* when the run kept them
        *[pa.field(f"test_{name}_last_epoch", pa.float64()) for name in METRIC_NAMES],
    ],
    metadata={"tlsearch.schema_version": SCHEMA_VERSION},
)

COLUMNS: tuple[str, ...] = tuple(RUN_SCHEMA.names)

#: The columns that identify a configuration (all its seeds); with the
#: ``config_hash`` they also pin its recipe.
CONFIG_KEYS: tuple[str, ...] = (
    "kind",
    "ft_target",
    "ft_size",
    "pt_source",
    "pt_size",
    "strategy",
    "sampling",
    "lr",
)


def validate_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A complete row dict: unknown keys rejected, missing ones ``None``, NaN floats ``None``.

    Raises:
        ValueError: an unknown column (the message lists the known ones), a missing ``run_id``,
            or a ``kind``/``status`` outside :data:`KINDS`/:data:`STATUSES`.
    """
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise ValueError(f"unknown result column(s) {unknown}; known: {', '.join(COLUMNS)}")
    out = {name: row.get(name) for name in COLUMNS}
    if not out["run_id"]:
        raise ValueError("a result row needs a run_id")
    for key, allowed in (("kind", KINDS), ("status", STATUSES)):
        if out[key] is not None and out[key] not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {out[key]!r}")
    for name, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[name] = None
    return out


def row_table(row: Mapping[str, Any]) -> pa.Table:
    """One validated row as a table with exactly :data:`RUN_SCHEMA`."""
    return pa.Table.from_pylist([validate_row(row)], schema=RUN_SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """``table`` cast to :data:`RUN_SCHEMA` (missing nullable columns added as nulls)."""
    columns = []
    for field in RUN_SCHEMA:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(columns, schema=RUN_SCHEMA)
