"""train_run refuses test structures identical to training ones unless allowed; column order of
multi-target data with masked values."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tlsearch.cli.main import build_parser
from tlsearch.cli.train import train_overrides
from tlsearch.graphs.settings import GraphSettings
from tlsearch.structures.generate import generate_dataset, write_jarvis_json
from tlsearch.structures.records import LoadResult, StructureRecord
from tlsearch.training import run
from tlsearch.training.config import RunConfig

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}


@pytest.fixture
def files(tmp_path):
    """train.json (20 structures) and test.json: 3 of them under new ids and targets + 4 new."""
    train = generate_dataset(20, seed=1).records
    fresh = generate_dataset(4, seed=2).records
    copies = [replace(r, id=f"copy-{r.id}", targets={"target": 0.0}) for r in train[:3]]
    return (
        str(write_jarvis_json(train, tmp_path / "train.json")),
        str(write_jarvis_json(copies + fresh, tmp_path / "test.json")),
        [(r.id, f"copy-{r.id}") for r in train[:3]],
    )


def _cfg(tmp_path, data: str, test: str, **top) -> RunConfig:
    return RunConfig(
        data=data,
        test=test,
        out_dir=tmp_path / "run",
        cache_dir=None,
        train={"epochs": 1, "device": "cpu", "num_threads": 1},
        model=TINY,
        **top,
    )


def test_overlapping_test_set_is_refused_before_training(tmp_path, files):
    data, test, pairs = files
    with pytest.raises(ValueError) as info:
        run.train_run(_cfg(tmp_path, data, test), progress=False)
    text = str(info.value)
    assert "3 of 7 test structures are identical to training structures" in text
    assert all(f"train {a!r} = test {b!r}" in text for a, b in pairs)
    assert "--allow-test-overlap" in text
    assert not (tmp_path / "run" / "model.pt").exists()  # nothing trained


def test_allowed_overlap_is_counted_in_metrics(tmp_path, files, caplog):
    data, test, _ = files
    metrics = run.train_run(_cfg(tmp_path, data, test, allow_test_overlap=True), progress=False)
    assert metrics["test_overlap"] == 3
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test_overlap"] == 3 and saved["test"]["n"] == 7
    assert "allowed" in caplog.text


def test_disjoint_test_set_records_zero_overlap(tmp_path):
    metrics = run.train_run(_cfg(tmp_path, "generated:20:1", "generated:5:2"), progress=False)
    assert metrics["test_overlap"] == 0


def test_cli_flag_sets_allow_test_overlap(tmp_path):
    parser = build_parser()
    base = ["train", "--data", "d.json", "--test", "t.json", "--out", str(tmp_path)]
    assert train_overrides(parser.parse_args([*base, "--allow-test-overlap"]))["allow_test_overlap"]
    assert "allow_test_overlap" not in train_overrides(parser.parse_args(base))  # config wins
    for command in ("finetune", "pretrain"):
        args = parser.parse_args([command, *base[1:], "--allow-test-overlap"])
        assert train_overrides(args)["allow_test_overlap"] is True


def _record(rid: str, **targets: float) -> StructureRecord:
    return StructureRecord(rid, np.eye(3) * 3.0, np.zeros((1, 3)), ("Po",), targets)


def test_masked_first_value_keeps_the_sources_column_order():
    records = [_record("a", y=1.0), _record("b", x=2.0, y=3.0)]  # a's x was NaN, masked
    assert run.resolve_target_names(records, None) == ["y", "x"]  # first-seen, without order
    assert run.resolve_target_names(records, None, order=["x", "y"]) == ["x", "y"]
    assert run.resolve_target_names(records, None, order=["x", "y", "z"]) == ["x", "y"]
    loaded = LoadResult(records, source="mem", target_order=["x", "y"])
    data = run.prepare_data(
        "mem", names=None, graph_settings=GraphSettings(), cache_dir=None, loaded=loaded,
        progress=False,
    )  # fmt: skip
    assert data.target_names == ["x", "y"]
    np.testing.assert_array_equal(data.targets, [[np.nan, 1.0], [2.0, 3.0]])
