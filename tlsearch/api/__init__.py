"""The Python API: what the ``tlsearch`` command does, as functions for notebooks and scripts.

Every function here is what its subcommand runs (the command line only parses flags and prints),
and each is re-exported by ``tlsearch`` itself, loaded on first use (``import tlsearch`` imports
neither torch nor Ray)::

    import tlsearch

    run = tlsearch.train("generated:200", "runs/demo", epochs=20)      # one model
    s = tlsearch.run_search("search_spaces/quickstart.yaml", smoke=True)
    s.table                                   # one row per configuration (pandas)
    best = tlsearch.best_pair("target", results=s, out="best_pair/target")
    m = tlsearch.load_model(best.ensemble)    # the winner's models, one per seed
    m.predict(atoms_list)                     # id, mean, std per structure (pandas)

Structures for :func:`predict` / :meth:`Predictor.predict` may be pymatgen ``Structure``, ASE
``Atoms``, CIF/POSCAR paths or any data spec (``data.db`` with ``target=``, a folder...).
The search's own subpackage is ``tlsearch.search``, so its function is :func:`run_search`.

The functions live by the step of the data flow they serve: :mod:`~tlsearch.api.runs` (single
runs), :mod:`~tlsearch.api.results` (the analysis), :mod:`~tlsearch.api.searches` (above it:
a :class:`Search` offers its results), :mod:`~tlsearch.api.fill` (``best_pair(search=...)``:
the search, then the analysis) and :mod:`~tlsearch.api.prediction`; the command line imports
them from here, so this is the one place to replace them (e.g. in tests).
"""

from __future__ import annotations

from tlsearch.api.prediction import load_model, predict
from tlsearch.api.results import (
    BestPairResult,
    Comparison,
    analyze,
    answer_text,
    best_pair,
    compare_paper,
    load_runs,
)
from tlsearch.api.runs import Run, finetune, mpt_pretrain, pretrain, run_config, train
from tlsearch.api.searches import Search, open_search, run_search

__all__ = [
    "BestPairResult",
    "Comparison",
    "Run",
    "Search",
    "analyze",
    "answer_text",
    "best_pair",
    "compare_paper",
    "finetune",
    "load_model",
    "load_runs",
    "mpt_pretrain",
    "open_search",
    "predict",
    "pretrain",
    "run_config",
    "run_search",
    "train",
]
