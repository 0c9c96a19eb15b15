"""tlsearch: pre-train/fine-tune strategy search for ALIGNN material-property models.

The package follows the data flow: ``structures`` (records in: files, databases, pymatgen and
ASE objects) -> ``graphs`` (k-nearest graph + line graph, cached on disk) -> ``model`` (ALIGNN
in plain PyTorch) -> ``training`` (the paper's recipe) -> ``transfer`` (pre-training,
fine-tuning strategies and sampling, multi-property pre-training) -> ``search`` (Ray Tune +
Optuna over all of it across seeds; the only user of Ray) -> ``results`` (the Parquet run log)
-> ``analysis`` (statistics over seeds, the paper's figures and tables, best pair, the paper's
numbers) -> ``prediction`` (a model or an ensemble applied to new structures). On top:
``api`` (the Python API) and ``cli`` (the ``tlsearch`` command, which calls the API).

The Python API is available from the package itself, loaded on first use, so that
``import tlsearch`` imports neither torch nor Ray::

    import tlsearch

    s = tlsearch.run_search("search_spaces/quickstart.yaml", smoke=True)
    s.table                                           # a pandas DataFrame
    best = tlsearch.best_pair("target", results=s)
    m = tlsearch.load_model(best.ensemble)
    m.predict(structures)                             # id, mean, std per structure

See :mod:`tlsearch.api` for every function.
"""

from tlsearch.lazy import lazy_getattr

__version__ = "0.1.0"

#: Names of the Python API (:mod:`tlsearch.api`), loaded on first use.
_API = (
    "BestPairResult",
    "Comparison",
    "Run",
    "Search",
    "analyze",
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
)
_EXPORTS = {name: "api" for name in _API} | {"Predictor": "prediction"}

__getattr__ = lazy_getattr(__name__, _EXPORTS)

__all__ = ["__version__", *_EXPORTS]


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
