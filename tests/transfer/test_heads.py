"""HeadedBackbone: data flow, readable state_dict keys, rebuild from its description."""

from __future__ import annotations

import pytest
import torch

from tlsearch.model.alignn import ALIGNN
from tlsearch.model.heads import HeadedBackbone


def test_forward_is_fc_of_new_layers_of_embedding(pretrained: ALIGNN, graph_batch) -> None:
    model = HeadedBackbone(pretrained, n_new_layers=2).eval()
    with torch.no_grad():
        expected = pretrained.fc(model.new_layers(pretrained.embed(graph_batch)))
        assert torch.equal(model(graph_batch), expected)
    assert model.trunk is pretrained  # wraps, does not copy


def test_zero_new_layers_is_the_trunk(pretrained: ALIGNN, graph_batch) -> None:
    model = HeadedBackbone(pretrained, n_new_layers=0).eval()
    with torch.no_grad():
        assert torch.equal(model(graph_batch), pretrained.eval()(graph_batch))


def test_state_dict_keys_are_readable(pretrained: ALIGNN) -> None:
    keys = list(HeadedBackbone(pretrained, n_new_layers=1).state_dict())
    assert all(k.startswith(("trunk.", "new_layers.")) for k in keys)
    assert "trunk.fc.weight" in keys
    assert "new_layers.0.layer.0.weight" in keys  # Linear of MLPLayer 0
    assert "new_layers.0.layer.1.running_mean" in keys  # its BatchNorm


def test_rebuilds_from_description(pretrained: ALIGNN, graph_batch) -> None:
    model = HeadedBackbone(pretrained, n_new_layers=2)
    description = model.describe()
    assert description["n_new_layers"] == 2
    assert description["backbone"]["config"]["hidden_features"] == 16
    rebuilt = HeadedBackbone.from_description(description)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(graph_batch), model.eval()(graph_batch))


def test_bad_inputs_are_named(pretrained: ALIGNN) -> None:
    with pytest.raises(TypeError, match="must be a Backbone"):
        HeadedBackbone(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind="):
        HeadedBackbone.from_description({"kind": "other"})
    with pytest.raises(ValueError, match="lacks n_new_layers"):
        HeadedBackbone.from_description({"kind": "headed_alignn", "base_config": {}})
    with pytest.raises(ValueError, match=">= 0"):
        HeadedBackbone(pretrained, n_new_layers=-1)
