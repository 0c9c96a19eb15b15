"""model.pt round trip: a loaded model predicts exactly as the saved one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tlsearch.graphs.settings import GraphSettings
from tlsearch.graphs.store import build_graph_store
from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import ALIGNNConfig
from tlsearch.structures.generate import generate_dataset
from tlsearch.training.checkpoint import load_model, read_bundle, save_model
from tlsearch.training.config import TrainConfig
from tlsearch.training.scaler import TargetScaler


def test_save_load_round_trip_predicts_identically(tmp_path):
    records = generate_dataset(6, seed=1).records
    settings = GraphSettings()
    store = build_graph_store(records, settings, None, progress=False)
    batch = store.collate(list(range(len(store))))
    cfg = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=8)
    torch.manual_seed(0)
    model = ALIGNN(cfg)
    model.train()
    model(batch)  # move the BatchNorm running statistics away from their initial values
    model.eval()
    with torch.no_grad():
        expected = model(batch)
    scaler = TargetScaler.fit(np.array([1.0, 2.0, 4.0]), "paper")
    path = save_model(
        tmp_path / "model.pt", model, cfg, scaler, settings, TrainConfig(epochs=3), ["target"],
        extra={"note": "x"},
    )  # fmt: skip
    loaded, bundle = load_model(path)
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), expected, rtol=0, atol=0)
    assert bundle.model_config == cfg
    assert bundle.graph_settings == settings
    assert bundle.train_config.epochs == 3
    assert bundle.target_names == ["target"]
    assert bundle.extra == {"note": "x"}
    np.testing.assert_array_equal(bundle.scaler.scale, scaler.scale)
    assert bundle.tlsearch_version


def test_wrong_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_bundle(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.pt"):
        read_bundle(junk)
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a tlsearch model file"):
        read_bundle(tmp_path / "foreign.pt")


def test_target_names_must_match_outputs(tmp_path):
    cfg = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=8)
    with pytest.raises(ValueError, match="2 target names"):
        save_model(
            tmp_path / "m.pt", ALIGNN(cfg), cfg, TargetScaler.identity(), GraphSettings(), None,
            ["a", "b"],
        )  # fmt: skip


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "model_pt"


@pytest.mark.parametrize("name", ["alignn", "headed_alignn", "multi_property_alignn"])
def test_model_files_written_before_the_backbone_interface_load_and_predict(name, tmp_path):
    """model.pt files written by tlsearch cac9dcb (plain, new head layers, multi-property)
    rebuild and predict what they predicted then, and survive a save with today's code."""
    expected = json.loads((FIXTURES / "expected.json").read_text())
    made = expected["structures"]
    records = generate_dataset(made["n"], seed=made["seed"], max_atoms=made["max_atoms"]).records
    settings = GraphSettings(max_neighbors=made["max_neighbors"])
    store = build_graph_store(records, settings, progress=False)
    batch = store.collate(range(len(store)))
    model, bundle = load_model(FIXTURES / f"{name}.pt")
    want = torch.tensor(expected["predictions"][name])
    with torch.no_grad():
        torch.testing.assert_close(model(batch), want, rtol=0, atol=0)
    resaved = save_model(
        tmp_path / "model.pt", model, bundle.model_config, bundle.scaler, bundle.graph_settings,
        bundle.train_config, bundle.target_names,
    )  # fmt: skip
    again, _ = load_model(resaved)
    assert type(again) is type(model)
    with torch.no_grad():
        torch.testing.assert_close(again(batch), want, rtol=0, atol=0)
