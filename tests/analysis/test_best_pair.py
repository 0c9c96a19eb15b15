"""Best-pair discovery on a result set whose answer is known (tests/analysis/synthetic.py)."""

from __future__ import annotations

import json

import pytest

from tests.analysis.synthetic import write_results
from tlsearch.analysis.best_pair import (
    export_checkpoints,
    justification,
    rank,
    winner_summary,
)
from tlsearch.analysis.frame import load_runs


@pytest.fixture
def results(tmp_path):
    write_results(tmp_path)
    return load_runs(tmp_path)


def test_winner_is_chosen_on_validation_never_on_test(results):
    best = rank(results, "DC")
    assert best.ft_size == 800
    win = best.winner
    # FE(941) has the best validation MAE among complete configurations; MPT and BG(941) are
    # better on test, FE(5000) better on validation but only 3 of 5 seeds ran.
    assert (win["pt_source"], win["pt_size"], win["strategy"]) == ("FE", 941, "unfreeze_all")
    assert win["vs_scratch_scratch_mean"] == pytest.approx(0.032)
    assert win["vs_scratch_pct_change"] == pytest.approx(100 * 0.005 / 0.032)
    assert win["significant"] and win["vs_scratch_n_pairs"] == 5
    partial = best.ranking[best.ranking["pt_size"] == 5000].iloc[0]
    assert not partial["eligible"] and partial["why_not"] == "3 of 5 seeds"
    with pytest.raises(ValueError, match="must not use the test set"):
        rank(results, "DC", select_metric="test_mae")
    with pytest.raises(ValueError, match="use one of val_mae, val_rmse, val_r2"):
        rank(results, "DC", select_metric="val_mape")
    by_r2 = rank(results, "DC", select_metric="val_r2")  # higher is better
    assert by_r2.ranking.iloc[0]["select_mean"] >= by_r2.ranking.iloc[1]["select_mean"]


def test_negative_transfer_and_failures_are_flagged(results):
    best = rank(results, "DC")
    last = best.ranking[best.ranking["strategy"] == "last_layer"].iloc[0]
    assert last["negative_transfer"] and last["eligible"]
    bg = rank(results, "BG")
    line = bg.ranking.iloc[0]
    assert not line["eligible"] and "1 diverged" in line["why_not"]
    assert bg.winner is None
    table = justification(best)
    assert table.iloc[0]["configuration"].startswith("FE(941)->DC800")
    assert table.iloc[-1]["note"] == "baseline"
    assert "NEGATIVE TRANSFER" in " ".join(table["note"])


def test_other_sizes_and_missing_targets(results):
    small = rank(results, "DC", ft_size=100)
    assert small.winner["pt_source"] == "BG" and small.winner["ft_size"] == 100
    ood = rank(results, "D2")
    assert ood.ft_size is None and ood.winner["kind"] == "mpt"
    with pytest.raises(ValueError, match="no fine-tuning results for target 'XX'"):
        rank(results, "XX")


def test_winner_checkpoints_export_as_an_ensemble(results, tmp_path):
    best = rank(results, "DC")
    manifest = export_checkpoints(best, results, tmp_path / "best")
    data = json.loads(manifest.read_text())
    assert [m["seed"] for m in data["members"]] == [0, 1, 2, 3, 4]
    first = tmp_path / "best" / data["members"][0]["model"]
    assert first.read_text().startswith("checkpoint finetune-DC-800-FE-941-unfreeze_all 0")
    summary = winner_summary(best)
    assert summary["winner"]["pt_source"] == "FE" and summary["selected_on"] == "val_mae"
    assert json.dumps(summary)  # JSON-able


def test_the_winner_exports_from_a_moved_results_folder(tmp_path):
    import shutil

    write_results(tmp_path / "cluster")
    shutil.copytree(tmp_path / "cluster", tmp_path / "laptop")
    shutil.rmtree(tmp_path / "cluster")  # rows still name /.../cluster/pw/work/...
    results = load_runs(tmp_path / "laptop")
    manifest = export_checkpoints(rank(results, "DC"), results, tmp_path / "best")
    data = json.loads(manifest.read_text())
    assert len(data["members"]) == 5
    assert all(str(tmp_path / "laptop" / "pw" / "work") in m["source"] for m in data["members"])
    first = tmp_path / "best" / data["members"][0]["model"]
    assert first.read_text().startswith("checkpoint finetune-DC-800-FE-941-unfreeze_all 0")
