"""Plots of one run's outputs (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def parity_plot(
    csv_path: Path, png_path: Path, metrics: dict[str, Any], quantity: str = "target"
) -> Path:
    """Scatter of test predictions vs targets with the y = x line; returns ``png_path``."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["target"] and r["prediction"]]
    y = [float(r["target"]) for r in rows]
    p = [float(r["prediction"]) for r in rows]
    lo, hi = min(y + p), max(y + p)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="y = x")
    ax.scatter(y, p, s=14, alpha=0.8)
    test = metrics.get("test") or {}
    r2, mae = test.get("r2"), test.get("mae")
    ax.set_title(f"test: R$^2$ {_fmt(r2)}, MAE {_fmt(mae)} (n={len(rows)})")
    ax.set_xlabel(f"{quantity}, computed")
    ax.set_ylabel(f"{quantity}, predicted")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.3g}"
