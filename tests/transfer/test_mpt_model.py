"""MultiPropertyALIGNN (one head per property) and its conversion to the FT model."""

from __future__ import annotations

import pytest
import torch

from tlsearch.model.config import ALIGNNConfig
from tlsearch.model.heads import HeadedBackbone
from tlsearch.model.multi_property import MultiPropertyALIGNN, to_finetune
from tlsearch.training.losses import masked_l1

PROPS = ["BG", "FE", "GV"]


@pytest.fixture
def mpt(tiny_config: ALIGNNConfig) -> MultiPropertyALIGNN:
    torch.manual_seed(0)
    return MultiPropertyALIGNN(tiny_config, PROPS, head_layers=1)


def test_forward_gives_one_column_per_property(mpt: MultiPropertyALIGNN, graph_batch) -> None:
    out = mpt(graph_batch)
    assert out.shape == (graph_batch.num_graphs, len(PROPS))
    mpt.eval()
    with torch.no_grad():
        h = mpt.embed(graph_batch)
        assert torch.equal(mpt(graph_batch)[:, 1:2], mpt.heads["FE"](h))


def test_layout_and_description(mpt: MultiPropertyALIGNN) -> None:
    keys = set(mpt.state_dict())
    assert not any(k.startswith("trunk.fc.") for k in keys)  # fc replaced by the heads
    assert {"heads.BG.0.layer.0.weight", "heads.BG.1.weight", "heads.GV.1.bias"} <= keys
    rebuilt = MultiPropertyALIGNN.from_description(mpt.describe())
    rebuilt.load_state_dict(mpt.state_dict())
    assert rebuilt.properties == PROPS and rebuilt.head_layers == 1


def test_property_without_known_values_gets_no_gradient(
    mpt: MultiPropertyALIGNN, graph_batch
) -> None:
    target = torch.full((graph_batch.num_graphs, 3), float("nan"))
    target[:, 0] = 0.5
    target[::2, 2] = -0.5
    loss = masked_l1(mpt(graph_batch), target, torch.isfinite(target))
    loss.backward()
    for name, param in mpt.heads["FE"].named_parameters():
        assert param.grad is None or torch.all(param.grad == 0), name
    assert mpt.heads["BG"][1].weight.grad.abs().sum() > 0
    assert mpt.heads["GV"][1].weight.grad.abs().sum() > 0


def test_to_finetune_copies_trunk_and_adds_two_layers_and_new_head(
    mpt: MultiPropertyALIGNN, graph_batch
) -> None:
    ft = to_finetune(mpt)
    assert isinstance(ft, HeadedBackbone) and ft.n_new_layers == 2
    assert ft.trunk.config.output_features == 1
    for key, value in mpt.trunk.state_dict().items():
        assert torch.equal(ft.trunk.state_dict()[key], value), key
    assert ft.trunk.fc.weight.shape == (1, 16)
    assert all(p.requires_grad for p in ft.parameters())
    assert ft(graph_batch).shape == (graph_batch.num_graphs, 1)
    ft.trunk.atom_embedding.layer[0].weight.data.add_(1.0)
    assert not torch.equal(  # a copy: the MPT model is untouched
        ft.trunk.atom_embedding.layer[0].weight, mpt.trunk.atom_embedding.layer[0].weight
    )


@pytest.mark.parametrize("bad", [[], ["BG", "BG"], ["a.b"], [""]])
def test_bad_property_names_are_rejected(tiny_config: ALIGNNConfig, bad: list[str]) -> None:
    with pytest.raises(ValueError, match="propert"):
        MultiPropertyALIGNN(tiny_config, bad)
