"""The report's figures read as a person sees them: blue is good on both triangles of a
heatmap (each metric on its own colour bar), nothing overlaps, bars are not slabs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tlsearch.analysis import figures
from tlsearch.analysis.report import target_spread


def _grids():
    rows, cols = ["A", "B"], ["40", "80"]
    r2 = pd.DataFrame([[0.5, 0.9], [0.5, 0.9]], index=rows, columns=cols)
    # B is in units 100x A's: the same relative error must get the same colour
    mae = pd.DataFrame([[0.8, 0.1], [80.0, 10.0]], index=rows, columns=cols)
    spread = pd.DataFrame([[1.0, 1.0], [100.0, 100.0]], index=rows, columns=cols)
    return r2, mae, spread


def test_mae_colour_is_better_where_mae_is_lower_and_compares_across_units():
    _, mae, spread = _grids()
    colour = figures.mae_colour_values(mae, spread)
    assert colour.at["A", "80"] > colour.at["A", "40"]  # lower MAE, better colour
    assert colour.at["A", "80"] == pytest.approx(colour.at["B", "80"])
    assert colour.at["A", "80"] == pytest.approx(0.9)
    assert figures.mae_colour_values(mae * 10, spread).min().min() == 0.0  # clipped


def test_heatmap_triangles_are_blue_where_good_each_on_its_own_colour_bar():
    r2, mae, spread = _grids()
    fig = figures.heatmap_figure(r2, mae, "a title long enough to reach the bars", (), None, spread)
    main, *bars = fig.axes
    assert len(bars) == 2
    labels = " | ".join(bar.get_ylabel() for bar in bars)
    assert "R2" in labels and "MAE" in labels
    # the upper triangle of the best-MAE cell (A, 80) is blue, that of the worst is not
    patches = main.patches  # per cell: R2 triangle, MAE triangle (rows top to bottom)
    best_mae, worst_mae = patches[3].get_facecolor(), patches[1].get_facecolor()
    assert best_mae[2] > best_mae[0] and worst_mae[0] > worst_mae[2]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = main.title if main.title.get_text() else main._left_title
    box = title.get_window_extent(renderer)
    for bar in bars:
        assert not box.overlaps(bar.get_window_extent(renderer))
    figures._pyplot().close(fig)


def test_pct_change_bars_keep_the_legend_off_the_bars_and_one_group_narrow():
    frame = pd.DataFrame({"pair": ["S-T", "S-T"], "strategy": ["a", "b"], "pct": [14.8, 13.2]})
    fig = figures.pct_change_figure(frame, "pair", "strategy", "pct", "a title", "%")
    (ax,) = fig.axes
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # right of the axes
    low, high = ax.get_xlim()
    assert all(bar.get_width() <= 0.3 * (high - low) for bar in ax.patches)
    figures._pyplot().close(fig)


def test_target_spread_is_the_std_of_the_test_values():
    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 2.5, 200)
    pred = y + rng.normal(0, 0.8, 200)
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    r2 = 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2)
    lines = pd.DataFrame(
        {"ft_target": ["T", "T"], "test_r2_mean": [r2, 1.0], "test_rmse_mean": [rmse, 0.0]}
    )
    assert target_spread(lines)["T"] == pytest.approx(np.std(y))  # the R2 = 1 line is skipped


def test_cell_numbers_stay_readable_on_dark_cells():
    r2 = pd.DataFrame([[-3.0, 0.99]], index=["A"], columns=["1", "2"])
    mae = pd.DataFrame([[5.0, 0.01]], index=["A"], columns=["1", "2"])
    fig = figures.heatmap_figure(r2, mae, "t", (), None, None)
    inks = {text.get_text(): text.get_color() for text in fig.axes[0].texts}
    assert inks["-3"] == "white" and inks["0.99"] == "white"  # dark red, dark blue
    figures._pyplot().close(fig)
