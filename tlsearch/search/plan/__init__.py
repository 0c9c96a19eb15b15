"""A search before anything runs (no Ray): the spec, the one preparation step, the compiled plan.

:mod:`.spec` (+ :mod:`.spec_parts`) reads ``search_spaces/*.yaml`` into a typed
:class:`~tlsearch.search.plan.spec.SearchSpec`; :mod:`.prepare` applies overrides, ``--var``,
``--smoke``, ``--rehearse`` (:mod:`.rehearse`), ``--offline`` (:mod:`.offline`), ``--seeds`` and
absolute storage paths, once; :mod:`.points` names the configurations, their ids, data and jobs;
:mod:`.compile` turns a prepared spec into Tune experiments and the plan of
:mod:`.records` (``plan.json``: one record per PT job and seed-run with its id and its whole job,
which trials execute); :mod:`.datacheck` checks every data file the plan reads once, before
anything runs.
"""
