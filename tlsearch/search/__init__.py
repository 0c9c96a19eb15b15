"""The search layer: spec -> Tune experiments -> seed-runs -> Parquet rows (the only Ray user).

- :mod:`~tlsearch.search.spec` (+ :mod:`~tlsearch.search.spec_parts`): ``search_spaces/*.yaml``
  as a typed :class:`~tlsearch.search.spec.SearchSpec`;
- :mod:`~tlsearch.search.points`: configurations, their ids, data and jobs (no Ray);
- :mod:`~tlsearch.search.compile`: Tune experiments, planned seed-runs and PT jobs (no Ray);
- :mod:`~tlsearch.search.jobs`: the one adapter to the training code (``run_job``);
- :mod:`~tlsearch.search.ddp`: multi-worker PT as a Ray Train ``TorchTrainer``;
- :mod:`~tlsearch.search.pretrain_cache`: content-addressed PT models, run once;
- :mod:`~tlsearch.search.rows`: result rows, failure classes, the metric a trial reports;
- :mod:`~tlsearch.search.trainable`: the Tune trial functions;
- :mod:`~tlsearch.search.driver`: ``run_search`` (``tlsearch search``);
- :mod:`~tlsearch.search.status`: planned / completed / failed / remaining (``tlsearch runs``);
- :mod:`~tlsearch.search.quickplot`: one PNG of test MAE per configuration.

The ``search`` and ``runs`` commands are in :mod:`tlsearch.cli.search`.

Nothing here imports Ray (or torch) at import time.
"""
