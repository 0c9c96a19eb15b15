"""Running a compiled plan on Ray: the driver, the Tune trials, Ray Train PT jobs, claims.

:mod:`.session` and :mod:`.driver` run a search (``tlsearch search``): start-up
(:mod:`.startup`), fit checks against the cluster (:mod:`.cluster_fit`), Tune experiments with
their searchers (:mod:`.searchers`, :mod:`.restore_limits`) and ``--resume`` (:mod:`.resume`).
:mod:`.trainable` holds the Tune trial functions, which execute plan records through
:mod:`.job_fn` (DDP PT jobs on Ray Train, :mod:`.ddp`, :mod:`.ddp_limits`; everything else
through :func:`tlsearch.jobs.run.run_job`); PT models are run once and shared
(:mod:`.pretrain_cache`, :mod:`.claims`); :mod:`.prefilter` skips sources ranked low;
:mod:`.gpu_memory` caps a trial's GPU share; :mod:`.rows` turns a job's metrics into its row.
"""
