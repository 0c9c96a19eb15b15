"""``tlsearch bench frozen``: graph path vs cached frozen trunk, seed-runs timed, ratios."""

from __future__ import annotations

import json
import logging

import pytest

from tlsearch.cli.main import main as tlsearch_main


def _bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "frozen.json"
    assert tlsearch_main(["bench", "frozen", *args, "--threads", "1", "--work", str(tmp_path / "w"),
                       "--json", str(out)]) == 0  # fmt: skip
    return json.loads(out.read_text())


def test_bench_frozen_reports_ratios_on_generated_data(tmp_path):
    graphs_logger = logging.getLogger("tlsearch.graphs")
    level = graphs_logger.level
    results = _bench(
        tmp_path, "--data", "generated:12:1", "--test", "none", "--hidden", "8", "--layers", "1",
        "--epochs", "2", "--strategies", "last_layer", "new_head", "--batch-size", "4",
    )  # fmt: skip
    assert graphs_logger.level == level  # the bench quiets the runs' loggers only while it runs
    assert set(results) == {"last_layer", "new_head"}
    # a new head's pre-BatchNorm bias follows float noise (tests/transfer/test_frozen_trunk.py)
    tolerance = {"last_layer": 1e-5, "new_head": 2e-2}
    for strategy, row in results.items():
        assert row["cached_used"] is True and row["warm_cache_hit"] is True
        assert row["ratio_wall_cold"] > 0 and row["ratio_train_warm"] > 0
        assert row["max_abs_prediction_difference"] < tolerance[strategy]
        assert row["projected_ratio_train_cold_500_epochs"] > 0


@pytest.mark.realdata
@pytest.mark.slow
def test_bench_frozen_on_dc_trial1_800(tmp_path, paper_data):
    results = _bench(
        tmp_path, "--data", str(paper_data / "ft" / "dc" / "dc_trial1_800.json.gz"),
        "--test", str(paper_data / "test" / "dc_test.json.gz"), "--epochs", "1",
        "--size", "50", "--strategies", "last_layer",
    )  # fmt: skip
    row = results["last_layer"]
    assert row["cached_used"] and row["max_abs_prediction_difference"] < 1e-5
