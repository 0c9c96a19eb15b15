"""The search layer, the only Ray user: spec -> plan -> Tune trials -> Parquet rows.

Three parts, in import order: :mod:`tlsearch.search.plan` (no Ray: the spec, the one
preparation step, the compiled plan stored as ``plan.json``), :mod:`tlsearch.search.watch`
(status, console, trackers: reads the plan and the rows) and :mod:`tlsearch.search.run` (the
driver, the Tune trials that execute plan records, Ray Train PT jobs, claims). The ``search``
and ``runs`` commands are in :mod:`tlsearch.cli.search`. Jobs (what a seed-run or PT job is, its
id, running it) live below in :mod:`tlsearch.jobs`, storage locations and locks in
:mod:`tlsearch.storage`. Nothing here imports Ray (or torch) at import time.
"""
