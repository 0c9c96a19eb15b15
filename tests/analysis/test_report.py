"""analyze: every supported figure and table, from Parquet only, and the CLI commands."""

from __future__ import annotations

import json
import re

import pandas as pd

from tests.analysis.synthetic import write_results
from tlsearch.analysis.frame import load_runs
from tlsearch.analysis.report import analyze
from tlsearch.cli.main import main


def test_analyze_writes_the_papers_figures_and_tables(tmp_path):
    write_results(tmp_path / "res")
    out = tmp_path / "report"
    html = analyze(load_runs(tmp_path / "res"), out)
    figures = {p.name for p in (out / "figures").iterdir()}
    for stem in (
        "heatmap_scratch",
        "heatmap_pairs_unfreeze_all",
        "heatmap_matrix",
        "pct_change_pt_size_FE",
        "pct_change_strategy_r2",
        "mpt_vs_pairwise",
    ):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures, stem
    assert (out / "tables" / "table1_D2.md").is_file()
    ood = pd.read_csv(out / "tables" / "table1_D2.csv", index_col=0)
    assert list(ood["model"]) == ["scratch", "MPT", "FE(941)"]
    assert ood.iloc[1]["test MAE"].startswith("0.127 ± ")
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 13 and summary["n_diverged"].sum() == 1
    text = (out / "report.md").read_text()
    # incomplete cells are marked, failures counted, the spec and versions included
    assert "*" in (out / "tables" / "heatmap_pairs_unfreeze_all_r2.md").read_text()
    assert (
        "[1 failed/diverged]" in (out / "tables" / "heatmap_pairs_unfreeze_all_r2.md").read_text()
    )
    assert "## Search spec: pw" in text and "- torch " in text and "| pw " in text
    assert re.search(r"<img src='figures/heatmap_matrix.png' width='\d+'>", html.read_text())
    matrix = pd.read_csv(out / "tables" / "heatmap_matrix_mae.csv", index_col=0)
    assert set(matrix.index) == {"BG", "DC", "FE"} and set(matrix.columns) == {"BG", "D2", "DC"}


def test_cli_analyze_best_pair_and_compare(tmp_path, capsys):
    write_results(tmp_path / "res")
    assert main(["analyze", str(tmp_path / "res"), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    capsys.readouterr()
    out = tmp_path / "bp"
    assert (
        main(["best-pair", "--target", "DC", "--results", str(tmp_path / "res"), "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "Best for DC (FT size 800), selected on val_mae: FE(941)->DC800" in printed
    assert "significantly better than scratch" in printed
    assert re.search(r"test MAE \d+\.\d% lower than scratch", printed)  # said in words
    answer = json.loads((out / "best_pair.json").read_text())
    assert answer["winner"]["pt_source"] == "FE" and answer["seeds"] == [0, 1, 2, 3, 4]
    assert (out / "model" / "ensemble.json").is_file() and (out / "ranking.csv").is_file()
    anchors = tmp_path / "a.csv"
    anchors.write_text(
        "experiment,pt,pt_size,ft,ft_size,strategy,trial,r2,mae\n"
        "scratch,,,DC,800,scratch,1,0.65,0.0217\n"
        "scratch,,,DC,800,scratch,2,0.66,0.0220\n"
    )
    assert (
        main(
            [
                "compare-paper",
                str(tmp_path / "res"),
                "--anchors",
                str(anchors),
                "--out",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| scratch" in printed and "0.0219 ± " in printed
    assert (tmp_path / "cmp" / "comparison.csv").is_file()
    args = ["compare-paper", str(tmp_path / "res"), "--anchors", str(anchors)]
    assert main([*args, "--experiment", "mpt"]) == 2
    assert "experiment(s) ['mpt'] not in the anchors (--experiment); they have scratch" in (
        capsys.readouterr().err
    )
    assert main([*args, "--experiment", "scratch"]) == 0
    assert "| scratch" in capsys.readouterr().out
    assert main([*args, "--weights", "last"]) == 2  # these rows have no last-epoch metrics
    assert "test_mae_last_epoch" in capsys.readouterr().err
    assert main(["best-pair", "--target", "XX", "--results", str(tmp_path / "res")]) == 2
    assert "no fine-tuning results for target 'XX'" in capsys.readouterr().err
