"""The paper's figures (PNG and SVG) from the tables of :mod:`tlsearch.analysis.tables`.

- :func:`triangle_heatmap`: Fig. 4 / 6a / 6b, each cell split along its diagonal: lower-left
  triangle test R2, upper-right triangle test MAE, each on its own colour bar and both blue
  where good (R2 near 1, MAE near 0 relative to the target's spread), the numbers printed,
  best cells boxed in gold;
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
    mae_scale: pd.DataFrame | None = None,
) -> list[Path]:
    """Rows x columns cells, lower triangle R2, upper triangle MAE (see :func:`heatmap_figure`)."""
    return save(heatmap_figure(r2, mae, title, highlight, n_seeds, mae_scale), stem)


def mae_colour_values(mae: pd.DataFrame, mae_scale: pd.DataFrame | None) -> pd.DataFrame:
    """MAE as a colour value in [0, 1], higher = better: ``1 - MAE / scale`` clipped.

    ``mae_scale`` holds, per cell, the standard deviation of its target's test values (so MAE
    of targets in different units share one colour bar: 0 = perfect, ~0.8 = predicting the
    mean). Without it (or where it is missing), the largest MAE of the cell's row is the scale.
    """
    scale = mae.max(axis=1).to_frame().reindex(columns=mae.columns).ffill(axis=1)
    if mae_scale is not None:
        given = mae_scale.reindex(index=mae.index, columns=mae.columns)
        scale = given.where(given > 0).fillna(scale)
    ratio = mae.astype(float) / scale.astype(float)
    return (1.0 - ratio).clip(0.0, 1.0)


def heatmap_figure(
    r2: pd.DataFrame,
    mae: pd.DataFrame,
    title: str,
    highlight: Iterable[tuple[str, str]] = (),
    n_seeds: pd.DataFrame | None = None,
    mae_scale: pd.DataFrame | None = None,
):
    """The figure of :func:`triangle_heatmap`: each cell split along its diagonal, test R2
    below (red 0 to blue 1, higher is better) and test MAE above on its own colour bar (blue =
    low MAE; see :func:`mae_colour_values`), so blue reads "good" in both triangles; the
    numbers printed, best cells boxed in gold, the seeds per cell in its corner."""
    plt = _pyplot()
    from matplotlib.patches import Polygon, Rectangle

    rows, cols = list(r2.index), list(r2.columns)
    mae = mae.reindex(index=rows, columns=cols)
    mae_colour = mae_colour_values(mae, mae_scale)
    cmap = plt.get_cmap("RdBu")
    side = 0.9 if max(len(rows), len(cols)) > 1 else 0.75
    width = side * len(cols) + 0.14 * max(len(str(r)) for r in rows) + 2.6
    height = max(side * len(rows) + 1.0, 2.4)  # room for the colour bars' labels
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    boxed = set(highlight)
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        for j, col in enumerate(cols):
            for value, colour, corners, anchor in (
                (
                    r2.at[row, col],
                    r2.at[row, col],
                    [(j, y), (j, y + 1), (j + 1, y)],
                    (j + 0.3, y + 0.3),
                ),
                (
                    mae.at[row, col],
                    mae_colour.at[row, col],
                    [(j + 1, y + 1), (j, y + 1), (j + 1, y)],
                    (j + 0.7, y + 0.7),
                ),
            ):
                missing = value is None or pd.isna(value) or pd.isna(colour)
                face = "#dddddd" if missing else cmap(float(np.clip(colour, 0.0, 1.0)))
                ax.add_patch(Polygon(corners, closed=True, facecolor=face, edgecolor="white"))
                label = "–" if value is None or pd.isna(value) else f"{float(value):.3g}"
                ink = "black" if missing else _ink(face)
                ax.text(*anchor, label, ha="center", va="center", fontsize=7, color=ink)
            _seed_count(ax, n_seeds, row, col, j, y)
            if (row, col) in boxed:
                ax.add_patch(Rectangle((j, y), 1, 1, fill=False, edgecolor="gold", linewidth=3))
    ax.set_xlim(0, len(cols))
    ax.set_ylim(0, len(rows))
    ax.set_xticks(np.arange(len(cols)) + 0.5, [str(c) for c in cols])
    ax.set_yticks(np.arange(len(rows)) + 0.5, [str(r) for r in reversed(rows)])
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9, loc="left")
    r2_bar = fig.colorbar(
        plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1)), ax=ax, fraction=0.05, pad=0.02
    )
    r2_bar.set_label("R2 (lower-left)", fontsize=7)
    mae_bar = fig.colorbar(
        plt.cm.ScalarMappable(cmap=cmap.reversed(), norm=plt.Normalize(0, 1)),
        ax=ax,
        fraction=0.05,
        pad=0.02,
    )
    scaled = "MAE / target std" if mae_scale is not None else "MAE / row max"
    mae_bar.set_label(f"{scaled} (upper-right)", fontsize=7)
    for bar in (r2_bar, mae_bar):
        bar.ax.tick_params(labelsize=7)
    return fig


def _ink(face) -> str:
    """Black on light cells, white on dark ones (relative luminance, ITU-R BT.709)."""
    red, green, blue = face[:3]
    return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.45 else "white"


def _seed_count(ax, n_seeds: pd.DataFrame | None, row, col, j: int, y: int) -> None:
    if n_seeds is None or row not in n_seeds.index or col not in n_seeds.columns:
        return
    n = n_seeds.at[row, col]
    if n is not None and not pd.isna(n):
        ax.text(j + 0.04, y + 0.04, f"n={int(n)}", ha="left", va="bottom", fontsize=5, color="0.4")


def pct_change_bars(
    frame: pd.DataFrame, x: str, hue: str, value: str, title: str, ylabel: str, stem: Path
) -> list[Path]:
    """Grouped bars of ``value`` with ``x`` groups and one colour per ``hue`` level."""
    return save(pct_change_figure(frame, x, hue, value, title, ylabel), stem)


def pct_change_figure(frame: pd.DataFrame, x: str, hue: str, value: str, title: str, ylabel: str):
    """The figure of :func:`pct_change_bars` (bars at most 0.25 of a group, legend outside)."""
    plt = _pyplot()
    frame = frame.dropna(subset=[value])
    xs = sorted(frame[x].astype(str).unique())
    hues = sorted(frame[hue].astype(str).unique(), key=_num_first)
    width = min(0.8 / max(len(hues), 1), 0.25)  # one group of two bars is not two slabs
    group = width * len(hues)
    fig, ax = plt.subplots(
        figsize=(max(3.0, (group + 0.5) * len(xs) + 2.2), 3.4), layout="constrained"
    )
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
    ax.set_xlim(-0.5 - group / 2, len(xs) - 0.5 + group / 2)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9, loc="left")
    _legend_outside(ax, title=hue)
    return fig


def _legend_outside(ax, **kwargs) -> None:
    """The legend right of the axes, where it can cover no bar."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title_fontsize=7, **kwargs)


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
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(labels) + 2.5), 3.6), layout="constrained")
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
    ax.set_title(title, fontsize=9, loc="left")
    _legend_outside(ax)
    return save(fig, stem)
