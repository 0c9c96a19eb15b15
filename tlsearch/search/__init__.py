"""The search layer: spec -> Tune experiments -> seed-runs -> Parquet rows (the only Ray user).

- :mod:`~tlsearch.search.spec` (+ :mod:`~tlsearch.search.spec_parts`): ``search_spaces/*.yaml``
  as a typed :class:`~tlsearch.search.spec.SearchSpec`;
- :mod:`~tlsearch.search.prepare`: the one preparation step (overrides, ``--var``, ``--smoke``,
  ``--rehearse``, ``--offline``, ``--seeds``, absolute storage paths; no Ray);
- :mod:`~tlsearch.search.points`: configurations, their ids, data and jobs (no Ray);
- :mod:`~tlsearch.search.compile`: Tune experiments, planned seed-runs and PT jobs, and the
  stored plan (no Ray);
- :mod:`~tlsearch.search.plan`: the compiled plan (``plan.json``): one record per PT job and
  seed-run holding its id and its whole job; trials execute its records;
- :mod:`~tlsearch.search.job_fn`: the job function trials run (DDP PT jobs on Ray Train, every
  other job through :func:`tlsearch.jobs.run.run_job`, the one adapter to the training code);
- :mod:`~tlsearch.search.ddp`: multi-worker PT as a Ray Train ``TorchTrainer``;
- :mod:`~tlsearch.search.pretrain_cache`: content-addressed PT models, run once;
- :mod:`~tlsearch.search.claims`: cluster-wide claims (:mod:`tlsearch.storage.claims` with a Ray
  actor where the object store cannot hold them);
- :mod:`~tlsearch.search.rows`: result rows and the metric a trial reports;
- :mod:`~tlsearch.search.trainable`: the Tune trial functions;
- :mod:`~tlsearch.search.driver`: ``run_search`` (``tlsearch search``);
- :mod:`~tlsearch.search.status`: planned / completed / failed / remaining (``tlsearch runs``);
- :mod:`~tlsearch.search.quickplot`: one PNG of test MAE per configuration.

The ``search`` and ``runs`` commands are in :mod:`tlsearch.cli.search`.

Jobs (what a seed-run or PT job is, its id, running it) live below in :mod:`tlsearch.jobs`,
storage locations and locks in :mod:`tlsearch.storage`. Nothing here imports Ray (or torch) at
import time.
"""
