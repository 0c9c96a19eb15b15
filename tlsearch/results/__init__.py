"""Results: one immutable Parquet row per seed-run under ``<storage>/<search>/runs/``.

Read a search with :func:`read_runs` (a ``pyarrow.Table`` with :data:`RUN_SCHEMA`), or with
pandas / DuckDB straight from the folder.
"""

from tlsearch.results.schema import COLUMNS, KINDS, RUN_SCHEMA, STATUSES, row_table, validate_row
from tlsearch.results.store import RunStore, read_runs, write_table_atomic

__all__ = [
    "COLUMNS",
    "KINDS",
    "RUN_SCHEMA",
    "STATUSES",
    "RunStore",
    "read_runs",
    "row_table",
    "validate_row",
    "write_table_atomic",
]
