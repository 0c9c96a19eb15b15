"""The Python API of searches: :func:`run_search`, :func:`open_search` and the :class:`Search`
they return (re-exported by :mod:`tlsearch.api`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsearch.api.results import BestPairResult, analyze, best_pair, load_runs

if TYPE_CHECKING:
    import pandas as pd

    from tlsearch.analysis.frame import Results
    from tlsearch.search.plan.spec import SearchSpec
    from tlsearch.search.watch.status import SearchStatus


@dataclass
class Search:
    """A search folder (``<storage>/<name>``) and its status, as :func:`run_search` leaves it.

    Attributes:
        status: planned / completed / failed / diverged / remaining seed-runs, PT jobs.
        spec: the spec it ran (None for :func:`open_search`).
    """

    status: SearchStatus
    spec: SearchSpec | None = None
    _results: Results | None = field(default=None, repr=False)

    @property
    def search_dir(self) -> str:
        return self.status.search_dir

    @property
    def table(self) -> pd.DataFrame:
        """One row per configuration: its keys, seeds, failed, diverged, mean test MAE/R2."""
        # pandas and the search layer (~0.5 s): loaded on use, here and below, so that
        # ``import tlsearch.api`` stays light (the CLI imports it for --help).
        import pandas as pd

        from tlsearch.search.watch.status import TABLE_COLUMNS

        return pd.DataFrame(self.status.table, columns=list(TABLE_COLUMNS))

    @property
    def runs(self) -> pd.DataFrame:
        """Every seed-run row of the Parquet run log (PT jobs excluded), one per seed."""
        return self.results().seed_runs

    def results(self) -> Results:
        """The rows as the analysis reads them (:func:`load_runs`)."""
        if self._results is None:
            self._results = load_runs(self.search_dir)
        return self._results

    def summary(self) -> dict[str, Any]:
        """The status as a dict (``tlsearch runs --json``)."""
        return self.status.as_dict()

    def plot(self, png: str | Path | None = None) -> Path:
        """Test MAE per configuration (``<search>/test_mae.png`` unless ``png``)."""
        from tlsearch.search.watch.quickplot import plot_test_mae  # pandas, matplotlib

        return plot_test_mae(self.search_dir, png)

    def analyze(self, out: str | Path) -> Path:
        """The paper's figures and tables for this search (:func:`analyze`)."""
        return analyze(self, out)

    def best_pair(self, target: str, **kwargs: Any) -> BestPairResult:
        """:func:`best_pair` on this search's results."""
        return best_pair(target, results=self, **kwargs)

    def __repr__(self) -> str:
        return f"Search({self.search_dir!r}: {self.status.counts_line()})"


def run_search(
    spec: SearchSpec | str | Path | Mapping[str, Any],
    *,
    storage: str | None = None,
    name: str | None = None,
    resume: bool = False,
    allow_changed_spec: bool = False,
    smoke: bool = False,
    rehearse: bool = False,
    offline: bool = False,
    seeds: int | None = None,
    max_concurrent: int | None = None,
    tensorboard: bool = False,
    address: str | None = None,
    verbose: int = 0,
    base_dir: str | Path | None = None,
) -> Search:
    """Run (or resume) a search on Ray (``tlsearch search``) and return its :class:`Search`.

    A local Ray is started unless ``address`` names a cluster or this process already has one;
    a Ray started here is stopped before this returns (or raises).

    Args:
        spec: ``search_spaces/*.yaml``, the same as a mapping, or a SearchSpec.
        storage, name, max_concurrent, tensorboard: override the spec's.
        resume, allow_changed_spec, smoke, rehearse, offline, seeds: as the command's switches.
        address: a Ray cluster (``"auto"``, ``"ray://host:10001"``).
        verbose: Tune's console verbosity (0-2).
        base_dir: folder of relative paths in the spec (default: the current directory).

    Raises:
        ValueError: an invalid spec, changed spec on resume, missing data (all named).
        tlsearch.search.run.driver.SearchInterruptedError: stopped before finishing.
    """
    from tlsearch.search.plan.prepare import prepare_spec  # spec models, Ray: on use
    from tlsearch.search.run.session import run_owning_ray

    base = None if base_dir is None else str(base_dir)
    overrides = {
        "storage": storage,
        "name": name,
        "max_concurrent": max_concurrent,
        "tensorboard": tensorboard or None,
    }
    prepared = prepare_spec(
        spec, overrides, smoke=smoke, rehearse=rehearse, offline=offline, seeds=seeds,
        base_dir=base,
    )  # fmt: skip
    status, _ = run_owning_ray(
        prepared, address=address, resume=resume, verbose=verbose, base_dir=base,
        allow_changed_spec=allow_changed_spec,
    )  # fmt: skip
    return Search(status, prepared)


def open_search(path: str | Path) -> Search:
    """The :class:`Search` of a search folder already on disk (``tlsearch runs``)."""
    from tlsearch.search.watch.status import search_status  # pandas, pyarrow: on use

    return Search(search_status(str(path)))
