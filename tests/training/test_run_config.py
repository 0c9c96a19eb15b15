"""TrainConfig / RunConfig: paper defaults, batch-size rule, YAML round trip, unknown keys."""

from __future__ import annotations

import pandas as pd
import pydantic
import pytest
from pymatgen.core import Lattice, Structure

from tlsearch.training.config import (
    RunConfig,
    TrainConfig,
    default_cache_dir,
    load_run_config,
    merge_overrides,
)
from tlsearch.training.data import prepare_run_data


def test_paper_defaults_and_batch_size_rule():
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.learning_rate, cfg.weight_decay) == (500, 1e-3, 1e-5)
    assert (cfg.optimizer, cfg.scheduler, cfg.loss) == ("adamw", "onecycle", "mse")
    # no early stopping: the paper's runs trained all 500 epochs (alignn never read its patience)
    assert (cfg.early_stopping_patience, cfg.val_fraction) == (None, 0.1)
    assert cfg.resolve_batch_size(720) == 16
    assert cfg.resolve_batch_size(1000) == 16
    assert cfg.resolve_batch_size(1001) == 64
    assert TrainConfig(batch_size=5).resolve_batch_size(5000) == 5


def test_unknown_keys_are_rejected():
    with pytest.raises(pydantic.ValidationError, match="learning_rat"):
        TrainConfig(learning_rat=1e-3)
    with pytest.raises(pydantic.ValidationError, match="epoch"):
        RunConfig(data="x", out_dir="o", train={"epoch": 3})


def test_yaml_round_trip_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "cache"))
    cfg = RunConfig(data="generated:40", out_dir=tmp_path / "run", train={"epochs": 7})
    assert cfg.cache_dir == tmp_path / "cache" == default_cache_dir()
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    assert load_run_config(path) == cfg
    again = load_run_config(path, {"train": {"seed": 3}, "model": {"hidden_features": 16}})
    assert again.train.epochs == 7 and again.train.seed == 3
    assert again.model.hidden_features == 16
    assert merge_overrides({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="bad.yaml must hold a mapping"):
        load_run_config(path)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_run_config(tmp_path / "missing.yaml")


def test_a_run_reads_a_pickled_table_only_when_allowed(tmp_path):
    cells = [
        Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (4, 5)
    ]
    path = tmp_path / "table.pkl"
    pd.DataFrame({"structure": cells, "y": [1.0, 2.0]}).to_pickle(path)
    base = {"data": str(path), "target": "y", "out_dir": tmp_path / "run", "cache_dir": None}
    with pytest.raises(ValueError, match=r"training data: .*table\.pkl: a pickle file runs any"):
        prepare_run_data(RunConfig(**base), str(path), None, "training", progress=False)
    allowed = RunConfig(**base, allow_pickle=True)
    prepared = prepare_run_data(allowed, str(path), None, "training", progress=False)
    assert len(prepared.store) == 2
