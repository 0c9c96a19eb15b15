"""TrainConfig / RunConfig: paper defaults, batch-size rule, YAML round trip, unknown keys."""

from __future__ import annotations

import pydantic
import pytest

from tlsearch.training.config import (
    RunConfig,
    TrainConfig,
    default_cache_dir,
    load_run_config,
    merge_overrides,
)


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
