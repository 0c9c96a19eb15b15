"""Jobs: what one training run is, its name, and the one way it reaches the training code.

:mod:`~tlsearch.jobs.config` (:class:`JobConfig`, :class:`DataRef`: a seed-run or PT job and
the dataset it reads), :mod:`~tlsearch.jobs.identity` (content-addressed names: config hashes,
run ids, PT keys, data identities), :mod:`~tlsearch.jobs.run` (:func:`run_job`, the adapter to
``tlsearch.training`` and ``tlsearch.transfer``), :mod:`~tlsearch.jobs.checkpoints` (mid-training
checkpoints in storage) and :mod:`~tlsearch.jobs.errors` (failure classes). It sits between
the training code and the search: it imports neither the search nor Ray, and the search
compiles its spec into jobs.
"""
