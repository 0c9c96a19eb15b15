"""FT strategies: exact trainable sets; frozen weights and BN statistics unchanged by AdamW."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from tlsearch.model.alignn import ALIGNN
from tlsearch.model.heads import HeadedBackbone
from tlsearch.transfer import strategies
from tlsearch.transfer.strategies import (
    STRATEGY_NAMES,
    layer_number,
    prepare_finetune,
    trainable_named_parameters,
)

_BOND = re.compile(r"^(alignn_layers\.\d+\.node_update|gcn_layers\.\d+)\.")
_LINE = re.compile(r"^alignn_layers\.\d+\.edge_update\.")


def _local(name: str) -> str:
    return name.removeprefix("trunk.")


# Strategy -> (model type, predicate on the parameter name: should it train?), written from
# the paper's definitions independently of the implementation.
EXPECTED: dict[str, tuple[type, Callable[[str], bool]]] = {
    "unfreeze_all": (ALIGNN, lambda n: True),
    "new_head": (HeadedBackbone, lambda n: n.startswith(("new_layers.", "trunk.fc."))),
    "last_layer": (ALIGNN, lambda n: n.startswith("fc.")),
    "interaction_2b": (ALIGNN, lambda n: bool(_BOND.match(n))),
    "interaction_3b": (ALIGNN, lambda n: bool(_LINE.match(n))),
    "new_head_freeze_1": (HeadedBackbone, lambda n: not n.startswith("trunk.atom_embedding.")),
    "new_head_freeze_6": (HeadedBackbone, lambda n: n.startswith(("new_layers.", "trunk.fc."))),
    "new_head_unfreeze_all": (HeadedBackbone, lambda n: True),
    "scratch": (ALIGNN, lambda n: True),
}

# Outputs nobody reads (the last ALIGNN layer's line-graph edge output z, the last GCN layer's
# bond output y): the BatchNorm of those outputs never gets a gradient, so AdamW (which skips
# parameters whose grad is None) leaves it unchanged even when it is trainable.
DEAD = {
    "alignn_layers.0.edge_update.bn_edges.weight",
    "alignn_layers.0.edge_update.bn_edges.bias",
    "gcn_layers.0.bn_edges.weight",
    "gcn_layers.0.bn_edges.bias",
}


def test_every_strategy_has_an_expectation() -> None:
    assert set(EXPECTED) == set(STRATEGY_NAMES) == set(strategies.STRATEGIES)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_requires_grad_is_exactly_the_strategy(name: str, pretrained: ALIGNN) -> None:
    kind, trains = EXPECTED[name]
    model = prepare_finetune(pretrained, name)
    assert type(model) is kind
    for pname, param in model.named_parameters():
        assert param.requires_grad == trains(pname), pname
    expected = [n for n, _ in model.named_parameters() if trains(n)]
    assert [n for n, _ in trainable_named_parameters(model)] == expected
    if kind is HeadedBackbone:
        assert model.n_new_layers == 1


def _owner_has_trainable(model: nn.Module, buffer_name: str) -> bool:
    owner = model.get_submodule(buffer_name.rpartition(".")[0])
    return any(p.requires_grad for p in owner.parameters())


def _train_steps(model: nn.Module, batch, steps: int = 3) -> None:
    params = [p for _, p in trainable_named_parameters(model)]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    for _ in range(steps):
        model.train()  # as a training loop does at every epoch
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(batch), batch.targets)
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_frozen_parts_bit_identical_after_adamw(name: str, pretrained: ALIGNN, graph_batch) -> None:
    torch.manual_seed(1)
    model = prepare_finetune(pretrained, name)
    params0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers0 = {n: b.clone() for n, b in model.named_buffers()}
    _train_steps(model, graph_batch)

    for pname, param in model.named_parameters():
        if not param.requires_grad:
            assert torch.equal(param, params0[pname]), f"frozen {pname} changed"
        elif _local(pname) in DEAD:
            assert param.grad is None, f"{pname} was expected to get no gradient"
        else:
            assert not torch.equal(param, params0[pname]), f"trainable {pname} did not change"
    for bname, buffer in model.named_buffers():
        if not _owner_has_trainable(model, bname):
            assert torch.equal(buffer, buffers0[bname]), f"frozen buffer {bname} changed"
        elif bname.endswith("running_mean"):
            assert not torch.equal(buffer, buffers0[bname]), f"trainable BN {bname} kept stats"


def test_paper_behaviour_lets_frozen_bn_statistics_move(pretrained: ALIGNN, graph_batch) -> None:
    once = prepare_finetune(pretrained, "last_layer")  # carries an enabled hook
    model = prepare_finetune(once, "last_layer", freeze_batchnorm_stats=False)
    key = "atom_embedding.layer.1.running_mean"
    before = model.state_dict()[key].clone()
    _train_steps(model, graph_batch, steps=1)
    assert not model.atom_embedding.layer[0].weight.requires_grad
    assert not torch.equal(model.state_dict()[key], before)


def test_frozen_modules_switch_to_eval_on_forward(pretrained: ALIGNN, graph_batch) -> None:
    model = prepare_finetune(pretrained, "last_layer")
    model.train()
    assert model.atom_embedding.training  # .train() resets every module ...
    model(graph_batch)
    assert not model.atom_embedding.training  # ... and the hook puts frozen ones back
    assert model.training and model.fc.training
    assert strategies.install_frozen_eval(model) is None  # already installed


def test_pretrained_model_is_not_modified(pretrained: ALIGNN) -> None:
    before = {n: p.detach().clone() for n, p in pretrained.named_parameters()}
    model = prepare_finetune(pretrained, "new_head")
    assert all(p.requires_grad for p in pretrained.parameters())
    assert model.trunk is not pretrained
    for name, param in pretrained.named_parameters():
        assert torch.equal(param, before[name])
        assert torch.equal(model.get_parameter(f"trunk.{name}"), param)


def test_scratch_discards_pretrained_weights(pretrained: ALIGNN) -> None:
    model = prepare_finetune(pretrained, "scratch")
    assert model.config == pretrained.config
    assert not torch.equal(model.fc.weight, pretrained.fc.weight)


def test_unknown_strategy_lists_valid_names(pretrained: ALIGNN) -> None:
    with pytest.raises(ValueError, match="valid: unfreeze_all, new_head"):
        prepare_finetune(pretrained, "freeze_everything")


def test_new_head_strategies_need_new_layers(pretrained: ALIGNN) -> None:
    with pytest.raises(ValueError, match="needs a HeadedBackbone"):
        strategies.new_head(pretrained)


def test_new_output_width_replaces_the_head(pretrained: ALIGNN, graph_batch) -> None:
    model = prepare_finetune(pretrained, "unfreeze_all", output_features=3)
    assert model.config.output_features == 3
    assert model(graph_batch).shape == (graph_batch.num_graphs, 3)


@pytest.mark.parametrize("name", ["interaction_2b", "interaction_3b"])
def test_strategy_4_with_a_new_width_trains_its_new_head(
    name: str, pretrained: ALIGNN, graph_batch
) -> None:
    # A new output width means a freshly initialised fc: frozen, it would be a random head.
    model = prepare_finetune(pretrained, name, output_features=2)
    fc = model.fc
    assert all(p.requires_grad for p in fc.parameters())
    names = [n for n, _ in trainable_named_parameters(model)]
    assert {"fc.weight", "fc.bias"} <= set(names)
    _, trains = EXPECTED[name]  # the strategy's own layers still train, the rest stay frozen
    for pname, param in model.named_parameters():
        assert param.requires_grad == (trains(pname) or pname.startswith("fc.")), pname
    before = fc.weight.detach().clone()
    params = [p for _, p in trainable_named_parameters(model)]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    loss = model(graph_batch).square().mean()
    loss.backward()
    optimizer.step()
    assert not torch.equal(fc.weight, before)


def test_strategy_4_with_the_same_width_keeps_the_pt_head_frozen(pretrained: ALIGNN) -> None:
    model = prepare_finetune(pretrained, "interaction_2b", output_features=1)
    assert not any(p.requires_grad for p in model.fc.parameters())


def test_alignn_blocks_are_the_paper_layers(pretrained: ALIGNN) -> None:
    headed = HeadedBackbone(pretrained, n_new_layers=1)
    assert layer_number(pretrained, "atom_embedding.layer.0.weight") == 1
    assert layer_number(headed, "trunk.angle_embedding.1.layer.0.bias") == 3
    assert layer_number(pretrained, "alignn_layers.0.edge_update.src_gate.weight") == 4
    assert layer_number(pretrained, "gcn_layers.0.bn_nodes.weight") == 5
    assert layer_number(pretrained, "readout") == 6
    assert layer_number(headed, "trunk.fc.weight") == 7
    assert layer_number(headed, "new_layers.0.layer.0.weight") == 7


def _reference_frozen_eval(model: nn.Module) -> list[str]:
    """The definition, module by module over whole subtrees (what the hook must equal)."""
    switched = []
    for name, module in model.named_modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params) and module.training:
            module.eval()
            switched.append(name)
    return switched


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_frozen_eval_switches_exactly_the_fully_frozen_modules(pretrained: ALIGNN, strategy):
    """The one-pass rule equals the definition: modules with parameters, none trainable,
    switched top-down (a switched module's children follow it into eval mode)."""
    import copy

    model = prepare_finetune(pretrained, strategy)
    model.train()
    reference = copy.deepcopy(model)
    switched = strategies.apply_frozen_eval(model)
    assert switched == _reference_frozen_eval(reference)
    assert [m.training for m in model.modules()] == [m.training for m in reference.modules()]
    assert bool(switched) == (strategy not in ("unfreeze_all", "new_head_unfreeze_all", "scratch"))
    assert strategies.apply_frozen_eval(model) == []  # already in eval mode


def test_head_only_strategies_are_those_that_train_only_the_head(pretrained: ALIGNN) -> None:
    """The search's cost order (tlsearch.search.plan.compile) relies on this list."""
    from tlsearch.transfer.names import HEAD_ONLY_STRATEGIES

    head = ("fc.", "trunk.fc.", "new_layers.")
    head_only = {
        name
        for name in STRATEGY_NAMES
        if all(
            n.startswith(head)
            for n, _ in trainable_named_parameters(prepare_finetune(pretrained, name))
        )  # fmt: skip
    }
    assert head_only == HEAD_ONLY_STRATEGIES
