"""The paper's Fig. 6b alone: the PT x FT matrix (strategy 1) with the best PT per FT target.

    python analysis/pairwise_matrix.py results/pairwise --out figs/ [--select val_mae]

Cells: mean over seeds of test R2 (lower triangle) and MAE (upper); boxed: the best PT source
per FT column by the selection metric (validation; the test set is never used to choose).
Also writes the matrix as CSV (means) and Markdown (mean ± 95% CI, n seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlsearch.analysis import figures, tables
from tlsearch.analysis.aggregate import summarize
from tlsearch.analysis.frame import load_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a search folder or a storage root")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--strategy", default="unfreeze_all")
    parser.add_argument("--select", default="val_mae", help="selection metric for the box")
    args = parser.parse_args()
    results = load_runs(args.results)
    summary = summarize(results.seed_runs, results.planned_seeds())
    lines = tables.matrix_lines(summary, args.strategy)
    if lines.empty:
        raise SystemExit(f"no fine-tuning results with strategy {args.strategy}")
    r2 = tables.grid(lines, "row", "column", "test_r2")
    mae = tables.grid(lines, "row", "column", "test_mae")
    counts = lines.pivot_table(index="row", columns="column", values="n_ok", aggfunc="first")
    best = tables.best_in_column(lines, args.select)
    paths = figures.triangle_heatmap(
        r2, mae, f"PT x FT, strategy {args.strategy}", args.out / "pairwise_matrix", best, counts
    )
    r2.to_csv(args.out / "pairwise_matrix_r2.csv")
    mae.to_csv(args.out / "pairwise_matrix_mae.csv")
    text = tables.grid(lines, "row", "column", "test_mae", text=True).to_markdown()
    (args.out / "pairwise_matrix_mae.md").write_text(text + "\n")
    sys.stdout.write("\n".join(str(p) for p in paths) + "\n")


if __name__ == "__main__":
    main()
