"""Parquet -> DataFrame -> per-configuration summary, with failures counted."""

from __future__ import annotations

import pytest

from tests.analysis.synthetic import write_results
from tlsearch.analysis.aggregate import scratch_line, summarize
from tlsearch.analysis.frame import load_runs, search_dirs
from tlsearch.results.store import RunStore


@pytest.fixture
def results(tmp_path):
    write_results(tmp_path)
    return load_runs(tmp_path)


def test_storage_root_and_search_folder_both_load(tmp_path):
    folder = write_results(tmp_path)
    assert search_dirs(tmp_path) == [str(tmp_path / "pw")]
    assert search_dirs(folder) == [str(folder)]
    assert len(load_runs(folder).runs) == len(load_runs(tmp_path).runs)
    with pytest.raises(FileNotFoundError, match="no search results"):
        search_dirs(tmp_path / "pw" / "work")
    with pytest.raises(FileNotFoundError, match="no results folder"):
        load_runs(tmp_path / "missing")


def test_summary_counts_failed_and_marks_incomplete(results):
    assert results.planned_seeds() == 5
    assert len(results.pretrain_runs) == 3
    summary = summarize(results.seed_runs, results.planned_seeds())
    assert len(summary) == 13
    diverged = summary[(summary["ft_target"] == "BG") & (summary["kind"] == "finetune")].iloc[0]
    assert (diverged["n_ok"], diverged["n_diverged"], diverged["incomplete"]) == (4, 1, True)
    assert diverged["first_error"] == "training diverged"
    partial = summary[summary["pt_size"] == 5000].iloc[0]
    assert partial["n_ok"] == 3 and partial["incomplete"]
    scratch = scratch_line(summary, "DC", 800)
    assert scratch["strategy"] == "scratch"
    assert scratch["test_mae_mean"] == pytest.approx(0.032)  # 0.030 + 0.001 * mean(0..4)
    assert scratch["test_mae_ci"] > 0 and scratch["n_ok"] == 5
    assert scratch_line(summary, "D2", None)["test_mae_mean"] == pytest.approx(0.150)


def test_a_run_recorded_in_two_searches_counts_once(tmp_path):
    write_results(tmp_path)
    other = RunStore.for_search(str(tmp_path), "fill")
    row = RunStore.for_search(str(tmp_path), "pw").read_row("scratch-DC-800-x-x-x-s0")
    row["search_name"] = "fill"
    other.write(row)
    results = load_runs(tmp_path)
    assert len(results.search_dirs) == 2
    assert (results.runs["run_id"] == "scratch-DC-800-x-x-x-s0").sum() == 1
