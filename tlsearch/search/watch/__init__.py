"""Watching a search: what it ran, what is left and what failed, as the driver and a user see it.

:mod:`.status` reads ``plan.json`` and the Parquet rows (``tlsearch runs``); :mod:`.console` is
the one progress display of ``tlsearch search``; :mod:`.monitor` follows the rows landing and
Tune's trials from the driver; :mod:`.tune_output` sends Tune's own tables to ``tune.log``;
:mod:`.tracking` logs to MLflow and W&B; :mod:`.quickplot` draws one PNG of a finished search.
It reads the plan (:mod:`tlsearch.search.plan`) and never starts trials.
"""
