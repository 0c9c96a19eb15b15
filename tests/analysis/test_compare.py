"""compare-paper: ours joined with an anchors CSV on a synthetic result set."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.analysis.synthetic import write_results
from tlsearch.analysis.compare import compare, comparison_table, load_anchors
from tlsearch.analysis.frame import load_runs


def _anchors(path):
    rows = []
    for trial in range(1, 6):
        rows += [
            ("pairwise_pt941", "BG", 941.0, "DC", 800.0, "unfreeze_all", trial, 0.70, 0.0189),
            ("scratch", None, None, "DC", 800.0, "scratch", trial, 0.653, 0.0217),
            ("mpt", "MPT", None, "DC", 800.0, "unfreeze_all_new_head", trial, 0.665, 0.0176),
        ]
    rows.append(("ft_strategy", "BG", 941.0, "DC", 800.0, "ALL-UF", None, 0.69, 0.019))
    rows.append(("ft_strategy", "BG", 941.0, "DC", 800.0, "LAST-LAY", None, 0.5, 0.03))
    frame = pd.DataFrame(
        rows,
        columns=["experiment", "pt", "pt_size", "ft", "ft_size", "strategy", "trial", "r2", "mae"],
    )
    frame.to_csv(path, index=False)
    return path


def test_compare_joins_on_pair_sizes_and_strategy(tmp_path):
    write_results(tmp_path / "res")
    anchors = load_anchors(_anchors(tmp_path / "a.csv"))
    matched, unmatched = compare(load_runs(tmp_path / "res"), anchors)
    key = matched.set_index(["experiment", "pt", "strategy"])
    bg = key.loc[("pairwise_pt941", "BG", "unfreeze_all")]
    assert bg["ours_mae"] == pytest.approx(0.022) and bg["paper_mae"] == pytest.approx(0.0189)
    assert bg["diff_mae"] == pytest.approx(0.022 - 0.0189)
    assert bg["paper_n"] == 5 and bg["ours_n"] == 5
    assert ("ft_strategy", "BG", "unfreeze_all") in key.index  # ALL-UF = strategy 1
    assert ("ft_strategy", "BG", "last_layer") in key.index  # LAST-LAY
    scratch = key.loc[("scratch", "", "scratch")]
    assert scratch["paper_mae"] == pytest.approx(0.0217) and not scratch["overlap_mae"]
    assert key.loc[("mpt", "MPT", "new_head_unfreeze_all")]["ours_r2"] == pytest.approx(0.73)
    # ours without a paper counterpart are listed, not dropped
    assert {"FE"} <= set(unmatched["pt"]) and len(matched) + len(unmatched) >= 13
    table = comparison_table(matched)
    assert list(table.columns[:4]) == ["experiment", "PT", "FT", "strategy"]
    row = table[table["experiment"] == "pairwise_pt941"].iloc[0]
    assert row["PT"] == "BG(941)" and row["FT"] == "DC800" and row["n ours/paper"] == "5/5"


def test_compare_the_last_epochs_weights_as_the_paper_evaluated(tmp_path):
    anchors = load_anchors(_anchors(tmp_path / "a.csv"))
    write_results(tmp_path / "old")  # rows without the last epoch's metrics
    with pytest.raises(ValueError, match="test_mae_last_epoch"):
        compare(load_runs(tmp_path / "old"), anchors, weights="last")
    write_results(tmp_path / "res", last_epoch=True)
    best, _ = compare(load_runs(tmp_path / "res"), anchors)
    last, _ = compare(load_runs(tmp_path / "res"), anchors, weights="last")
    key = ["experiment", "pt", "strategy"]
    best, last = best.set_index(key), last.set_index(key)
    bg = ("pairwise_pt941", "BG", "unfreeze_all")
    assert best.loc[bg, "ours_mae"] == pytest.approx(0.022)
    assert last.loc[bg, "ours_mae"] == pytest.approx(0.027)
    assert last.loc[bg, "ours_r2"] == pytest.approx(best.loc[bg, "ours_r2"] - 0.05)
    assert last.loc[bg, "diff_mae"] == pytest.approx(0.027 - 0.0189)
    with pytest.raises(ValueError, match="weights must be one of"):
        compare(load_runs(tmp_path / "res"), anchors, weights="final")


def test_bad_anchor_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_anchors(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("experiment,pt\nx,y\n")
    with pytest.raises(ValueError, match="missing column"):
        load_anchors(tmp_path / "bad.csv")


@pytest.mark.realdata
def test_the_papers_own_anchors_reduce_to_its_quoted_numbers(paper_data):
    """The data README quotes scratch DC800 R2 0.653 / MAE 0.022 and BG-DC800 0.697 / 0.019."""
    from tlsearch.analysis.compare import paper_summary

    summary = paper_summary(load_anchors(paper_data / "anchors" / "paper_metrics.csv"))

    def one(experiment, pt, strategy):
        rows = summary[
            (summary["experiment"] == experiment)
            & (summary["pt"] == pt)
            & (summary["ft"] == "DC")
            & (summary["ft_size"] == 800)
            & (summary["strategy"] == strategy)
        ]
        assert len(rows) == 1
        return rows.iloc[0]

    scratch = one("scratch", "", "scratch")
    assert scratch["paper_n"] == 5
    assert scratch["paper_r2"] == pytest.approx(0.653, abs=5e-4)
    assert scratch["paper_mae"] == pytest.approx(0.0217, abs=5e-5)
    pair = one("pairwise_pt941", "BG", "unfreeze_all")
    assert pair["paper_r2"] == pytest.approx(0.697, abs=5e-4)
    assert pair["paper_mae"] == pytest.approx(0.0189, abs=5e-5)
    assert pair["paper_r2_ci"] > 0
    # every FT strategy of the paper maps to one of ours
    strategies = set(summary.loc[summary["experiment"] == "ft_strategy", "strategy"])
    assert strategies == {
        "unfreeze_all",
        "new_head",
        "last_layer",
        "interaction_2b",
        "interaction_3b",
    }
