"""Every figure and table of the paper that a search's results support, as one report.

    python analysis/paper_report.py results/pairwise --out report/

Same as ``tlsearch analyze``: triangle heatmaps (Fig. 4, 6a/b), percentage change vs scratch
(Fig. 5), MPT vs pair-wise vs scratch (Fig. 6c), the out-of-distribution table (Table 1),
``summary.csv`` and ``report.md``/``report.html``. The logic is :mod:`tlsearch.analysis`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tlsearch.analysis.frame import load_runs
from tlsearch.analysis.report import analyze


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a search folder or a storage root")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--search", help="only this search under RESULTS")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger(__name__).info(
        "report: %s", analyze(load_runs(args.results, args.search), args.out)
    )


if __name__ == "__main__":
    main()
