"""The backbone interface: ALIGNN through it, and a second family that joins by one module.

The second family is defined here (an MLP over each structure's mean atom features, read from
the same graph batches) and registered by one registry entry, as a real family would be. It
then builds, predicts, saves and reloads, freezes by blocks, fine-tunes with the paper's
strategies and has its trunk features cached: nothing in training or transfer knows it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from tlsearch.graphs.batch import GraphBatch
from tlsearch.graphs.settings import GraphSettings
from tlsearch.graphs.store import GraphStore, build_graph_store
from tlsearch.model import registry
from tlsearch.model.alignn import ALIGNN
from tlsearch.model.backbone import Backbone, trunk_parameters, unwrap_trunk
from tlsearch.model.config import ALIGNNConfig
from tlsearch.model.heads import HeadedBackbone
from tlsearch.model.layers import MLPLayer
from tlsearch.model.pooling import average_pool
from tlsearch.structures.generate import generate_dataset
from tlsearch.structures.records import StructureRecord
from tlsearch.training.checkpoint import load_model, read_bundle, save_model
from tlsearch.training.scaler import TargetScaler
from tlsearch.transfer.frozen_trunk import (
    FeatureStore,
    HeadOnly,
    compute_features,
    inexact_reason,
    trunk_digest,
)
from tlsearch.transfer.strategies import prepare_finetune

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "model_pt"
SETTINGS = GraphSettings(max_neighbors=4)


class CompositionMLP(nn.Module):
    """A toy family: mean atom features -> ``depth`` MLP blocks -> linear head."""

    family: ClassVar[str] = "composition_mlp"
    family_version: ClassVar[str] = "test"

    def __init__(self, width: int = 8, depth: int = 2, output_features: int = 1) -> None:
        super().__init__()
        self.args = {"width": width, "depth": depth, "output_features": output_features}
        self.blocks = nn.ModuleList(
            MLPLayer(92 if i == 0 else width, width) for i in range(depth)
        )  # fmt: skip
        self.fc = nn.Linear(width, output_features)

    @property
    def feature_width(self) -> int:
        return self.args["width"]

    @property
    def output_features(self) -> int:
        return self.args["output_features"]

    def layer_features(self, batch: GraphBatch) -> list[Tensor]:
        h = average_pool(batch.atom_features, batch.node_graph, batch.num_graphs)
        out = []
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def features(self, batch: GraphBatch) -> Tensor:
        return self.layer_features(batch)[-1]

    def head(self, h: Tensor) -> Tensor:
        return self.fc(h)

    def forward(self, batch: GraphBatch) -> Tensor:
        return self.head(self.features(batch))

    def replace_head(self, output_features: int) -> nn.Module:
        self.fc = nn.Linear(self.feature_width, output_features)
        self.args["output_features"] = output_features
        return self.fc

    def trunk_blocks(self) -> list[tuple[str, nn.Module]]:
        return [(f"blocks.{i}", block) for i, block in enumerate(self.blocks)]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.family, "version": self.family_version, "config": dict(self.args)}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> CompositionMLP:
        return cls(**description["config"])

    @classmethod
    def from_pretrained(cls, source: Any) -> CompositionMLP:
        state = torch.load(source, weights_only=True) if isinstance(source, Path) else source
        model = cls(**state["args"])
        model.load_state_dict(state["weights"])
        return model.eval()

    @classmethod
    def input_store(
        cls,
        records: Sequence[StructureRecord],
        settings: GraphSettings,
        cache_dir: Path | None = None,
        progress: bool = False,
    ) -> GraphStore:
        return build_graph_store(records, settings, cache_dir, progress)


@pytest.fixture
def toy_family(monkeypatch: pytest.MonkeyPatch) -> type[CompositionMLP]:
    """The one registry line a family needs."""
    monkeypatch.setitem(registry.FAMILIES, "composition_mlp", f"{__name__}:CompositionMLP")
    return CompositionMLP


@pytest.fixture(scope="module")
def store() -> GraphStore:
    records = generate_dataset(6, seed=1, max_atoms=4).records
    return ALIGNN.input_store(records, SETTINGS)


@pytest.fixture(scope="module")
def batch(store: GraphStore) -> GraphBatch:
    return store.collate(range(len(store)))


def _toy(seed: int = 0) -> CompositionMLP:
    torch.manual_seed(seed)
    return CompositionMLP().eval()


# --- a second family ----------------------------------------------------------------------------


def test_a_family_joins_by_one_registry_entry(toy_family) -> None:
    assert registry.family("composition_mlp") is toy_family
    assert isinstance(_toy(), Backbone)
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        registry.family("nope")


def test_features_then_head_is_the_model(toy_family, batch) -> None:
    model = _toy()
    with torch.no_grad():
        h = model.features(batch)
        assert h.shape == (batch.num_graphs, model.feature_width)
        assert torch.equal(model.head(h), model(batch))
        assert torch.equal(model.layer_features(batch)[-1], h)


@pytest.mark.parametrize("new_layers", [0, 1])
def test_save_and_load_round_trip(toy_family, batch, tmp_path, new_layers) -> None:
    model = _toy() if new_layers == 0 else HeadedBackbone(_toy(), n_new_layers=1).eval()
    with torch.no_grad():
        expected = model(batch)
    cfg = ALIGNNConfig()  # model.pt's ALIGNN settings, not read back for another family
    save_model(
        tmp_path / "m.pt", model, cfg, TargetScaler.identity(), SETTINGS, None, ["target"]
    )  # fmt: skip
    loaded, bundle = load_model(tmp_path / "m.pt")
    assert type(loaded) is type(model)
    assert unwrap_trunk(loaded).family == "composition_mlp"
    with torch.no_grad():
        assert torch.equal(loaded(batch), expected)


def test_freezing_by_blocks_and_the_paper_strategies(toy_family) -> None:
    pretrained = _toy()
    trainable = {}
    for name in ("last_layer", "new_head", "new_head_freeze_1", "unfreeze_all"):
        params = prepare_finetune(pretrained, name).named_parameters()
        trainable[name] = {n for n, p in params if p.requires_grad}
    assert trainable["last_layer"] == {"fc.weight", "fc.bias"}
    assert {n.split(".")[0] for n in trainable["new_head"]} == {"trunk", "new_layers"}
    assert not any(n.startswith("trunk.blocks.") for n in trainable["new_head"])
    assert any(n.startswith("trunk.blocks.1.") for n in trainable["new_head_freeze_1"])
    assert not any(n.startswith("trunk.blocks.0.") for n in trainable["new_head_freeze_1"])
    assert len(trainable["unfreeze_all"]) == len(list(pretrained.parameters()))
    with pytest.raises(ValueError, match="applies to ALIGNN only"):
        prepare_finetune(pretrained, "interaction_2b")


def test_a_new_width_gets_a_new_trained_head_and_scratch_reinitialises(toy_family, batch) -> None:
    pretrained = _toy()
    model = prepare_finetune(pretrained, "last_layer", output_features=2)
    assert model(batch).shape == (batch.num_graphs, 2)
    assert all(p.requires_grad for p in model.fc.parameters())
    assert pretrained.output_features == 1  # copied, not modified
    scratch = prepare_finetune(pretrained, "scratch")
    assert scratch.describe() == pretrained.describe()
    assert not torch.equal(scratch.fc.weight, pretrained.fc.weight)


def test_trunk_features_are_cached_exactly_for_head_only_strategies(toy_family, store) -> None:
    model = prepare_finetune(_toy(), "new_head")
    assert inexact_reason(model) is None
    assert inexact_reason(prepare_finetune(_toy(), "unfreeze_all")) is not None
    assert trunk_digest(model) == trunk_digest(_toy())  # the trunk, not the head, is the key
    assert trunk_digest(_toy(seed=1)) != trunk_digest(_toy())
    indices = np.arange(len(store))
    features = compute_features(model, store, indices, batch_size=4, device=torch.device("cpu"))
    head_only = HeadOnly(model).eval()
    with torch.no_grad():
        cached = head_only(FeatureStore(features, store).collate(indices))
        torch.testing.assert_close(cached, model.eval()(store.collate(indices)))


# --- ALIGNN through the interface ---------------------------------------------------------------


def test_alignn_through_the_interface_predicts_what_main_predicted() -> None:
    """Features then head of the model.pt written by tlsearch cac9dcb give its outputs."""
    expected = json.loads((FIXTURES / "expected.json").read_text())
    made = expected["structures"]
    records = generate_dataset(made["n"], seed=made["seed"], max_atoms=made["max_atoms"]).records
    graphs = ALIGNN.input_store(records, GraphSettings(max_neighbors=made["max_neighbors"]))
    batch = graphs.collate(range(len(graphs)))
    model, _ = load_model(FIXTURES / "alignn.pt")
    with torch.no_grad():
        out = model.head(model.features(batch))
    want = torch.tensor(expected["predictions"]["alignn"])
    torch.testing.assert_close(out, want, rtol=0, atol=0)


def test_alignn_describes_itself_and_loads_its_own_checkpoints(batch, tmp_path) -> None:
    config = ALIGNNConfig(alignn_layers=1, gcn_layers=2, hidden_features=8, embedding_features=8)
    torch.manual_seed(0)
    model = ALIGNN(config).eval()
    assert isinstance(model, Backbone) and registry.family("alignn") is ALIGNN
    assert registry.from_description(model.describe()).config == config
    torch.save({"model": model.state_dict()}, tmp_path / "checkpoint_100.pt")  # alignn's form
    loaded = ALIGNN.from_pretrained(tmp_path / "checkpoint_100.pt")
    assert loaded.config == config and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(batch), model(batch))
        layers = model.layer_features(batch)
        assert len(layers) == 3 and torch.equal(layers[-1], model.features(batch))


def test_alignn_trunk_blocks_are_everything_but_the_head() -> None:
    model = ALIGNN(ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden_features=8))
    trunk = {name for name, _ in trunk_parameters(model)}
    assert {name for name, _ in model.named_parameters()} - trunk == {"fc.weight", "fc.bias"}
    assert [name for name, _ in model.trunk_blocks()][-1] == "readout"


def test_a_description_of_another_version_loads_with_a_warning(toy_family, caplog) -> None:
    description = _toy().describe() | {"version": "older"}
    assert type(registry.from_description(description)) is toy_family
    assert "version older" in caplog.text


def test_unknown_kinds_and_old_descriptions(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown model kind 'nope'"):
        registry.from_description({"kind": "nope"})
    _, bundle = read_bundle(FIXTURES / "headed_alignn.pt")
    assert bundle.architecture["kind"] == "headed_alignn"  # as written before the interface
    rebuilt = registry.from_description(bundle.architecture)
    assert isinstance(rebuilt, HeadedBackbone) and rebuilt.describe()["kind"] == "headed"
