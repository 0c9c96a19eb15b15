"""The paper's figures (PNG and SVG) from the tables of :mod:`tlsearch.analysis.tables`.

- :func:`triangle_heatmap`: Fig. 4 / 6a / 6b, each cell split along its diagonal: lower-left
  triangle test R2, upper-right triangle test MAE, both red (0) to blue (1) as in the paper
  (a good model is blue below, red above), the numbers printed, best cells boxed in yellow;
- :func:`pct_change_bars`: Fig. 5a/b (bars per FT target, one colour per PT size) and 5c/d
  (one colour per FT strategy), the paper's percentage change vs scratch;
- :func:`mpt_bars`: Fig. 6c, MPT (hatched) and best pair-wise (solid) vs scratch, R2 and MAE.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

FORMATS = ("png", "svg")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``; close the figure."""
    plt = _pyplot()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def triangle_heatmap(
    r2: pd.DataFrame,
    mae: pd.DataFrame,
    title: str,
    stem: Path,
    highlight: Iterable[tuple[str, str]] = (),
    n_seeds: pd.DataFrame | None = None,
) -> list[Path]:
    """Rows x columns cells, lower triangle R2, upper triangle MAE (see module doc)."""
    plt = _pyplot()
    from matplotlib.patches import Polygon, Rectangle

    rows, cols = list(r2.index), list(r2.columns)
    cmap = plt.get_cmap("RdBu")
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.5, 0.8 * len(rows) + 1.6))
    boxed = set(highlight)
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            y = len(rows) - 1 - i
            for value, corners, anchor in (
                (r2.at[row, col], [(j, y), (j, y + 1), (j + 1, y)], (j + 0.3, y + 0.3)),
                (
                    mae.at[row, col] if row in mae.index and col in mae.columns else None,
                    [(j + 1, y + 1), (j, y + 1), (j + 1, y)],
                    (j + 0.7, y + 0.7),
                ),
            ):
                missing = value is None or pd.isna(value)
                color = "#dddddd" if missing else cmap(float(np.clip(value, 0.0, 1.0)))
                ax.add_patch(Polygon(corners, closed=True, facecolor=color, edgecolor="white"))
                label = "–" if missing else f"{float(value):.2f}"
                ax.text(*anchor, label, ha="center", va="center", fontsize=7)
            if n_seeds is not None and row in n_seeds.index and col in n_seeds.columns:
                n = n_seeds.at[row, col]
                if n is not None and not pd.isna(n):
                    ax.text(
                        j + 0.04,
                        y + 0.04,
                        f"n={int(n)}",
                        ha="left",
                        va="bottom",
                        fontsize=5,
                        color="#333333",
                    )
            if (row, col) in boxed:
                ax.add_patch(Rectangle((j, y), 1, 1, fill=False, edgecolor="gold", linewidth=3))
    ax.set_xlim(0, len(cols))
    ax.set_ylim(0, len(rows))
    ax.set_xticks(np.arange(len(cols)) + 0.5, [str(c) for c in cols])
    ax.set_yticks(np.arange(len(rows)) + 0.5, [str(r) for r in reversed(rows)])
    ax.set_aspect("equal")
    ax.set_title(f"{title}\nlower triangle: test R2, upper: test MAE (mean over seeds)", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, fraction=0.04, pad=0.02)
    return save(fig, stem)


def pct_change_bars(
    frame: pd.DataFrame, x: str, hue: str, value: str, title: str, ylabel: str, stem: Path
) -> list[Path]:
    """Grouped bars of ``value`` with ``x`` groups and one colour per ``hue`` level."""
    plt = _pyplot()
    frame = frame.dropna(subset=[value])
    xs = sorted(frame[x].astype(str).unique())
    hues = sorted(frame[hue].astype(str).unique(), key=_num_first)
    width = 0.8 / max(len(hues), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(xs) + 2), 3.6))
    for k, level in enumerate(hues):
        part = frame[frame[hue].astype(str) == level]
        heights = [
            part.loc[part[x].astype(str) == name, value].mean()
            if name in set(part[x].astype(str))
            else np.nan
            for name in xs
        ]
        ax.bar(np.arange(len(xs)) + (k - (len(hues) - 1) / 2) * width, heights, width, label=level)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(xs)), xs)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(title=hue, fontsize=7, title_fontsize=7)
    return save(fig, stem)


def _num_first(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def mpt_bars(frame: pd.DataFrame, title: str, stem: Path) -> list[Path]:
    """Fig. 6c: % change vs scratch of MPT (hatched) and best pair-wise (solid), R2 and MAE."""
    plt = _pyplot()
    labels = [f"{t}{s}" for t, s in zip(frame["ft_target"], frame["ft_size"], strict=True)]
    xs = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(labels) + 2), 3.6))
    bars = (
        ("mpt_pct_test_r2", -0.3, "tab:blue", "//", "MPT R2"),
        ("pairwise_pct_test_r2", -0.1, "tab:blue", "", "pair-wise R2"),
        ("mpt_pct_test_mae", 0.1, "tab:orange", "//", "MPT MAE"),
        ("pairwise_pct_test_mae", 0.3, "tab:orange", "", "pair-wise MAE"),
    )
    for column, offset, color, hatch, label in bars:
        if column in frame:
            values = pd.to_numeric(frame[column], errors="coerce")
            ax.bar(
                xs + offset,
                values,
                0.2,
                color=color,
                hatch=hatch,
                edgecolor="black",
                linewidth=0.4,
                label=label,
            )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(xs, labels)
    ax.set_ylabel("% change vs scratch (positive = better)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, stem)
