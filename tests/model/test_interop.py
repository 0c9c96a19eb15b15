"""Loading alignn-style checkpoints (no alignn needed: our own state_dicts have its layout)."""

from __future__ import annotations

import pytest
import torch

from tlsearch.model import (
    ALIGNN,
    ALIGNNConfig,
    CheckpointMismatchError,
    infer_config,
    load_alignn_state_dict,
    read_alignn_state_dict,
)

SMALL = ALIGNNConfig(alignn_layers=1, gcn_layers=2, hidden_features=16, embedding_features=8)


def model(seed: int = 0, **overrides) -> ALIGNN:
    torch.manual_seed(seed)
    return ALIGNN(SMALL.model_copy(update=overrides))


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (key, x), (key2, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert key == key2
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("form", ["raw", "model-key", "ddp", "ddp-in-model-key"])
def test_accepts_alignn_checkpoint_forms(tmp_path, form):
    source = model(seed=1)
    state = source.state_dict()
    if form.startswith("ddp"):
        state = {f"module.{k}": v for k, v in state.items()}
    if form.endswith("model-key"):
        state = {"model": state, "optimizer": {}, "epoch": 3}
    path = tmp_path / "best_model.pt"
    torch.save(state, path)
    target = model(seed=2)
    result = load_alignn_state_dict(target, path)
    assert (result.missing, result.unexpected, result.mismatched) == ([], [], [])
    assert_same_weights(target, source)


def test_width_mismatch_names_the_hyperparameter():
    with pytest.raises(CheckpointMismatchError) as info:
        load_alignn_state_dict(model(), model(hidden_features=32).state_dict())
    message = str(info.value)
    assert "hidden_features mismatch: checkpoint has 32, model has 16" in message
    assert "atom_embedding.layer.0.weight: checkpoint (32, 92) vs model (16, 92)" in message


def test_depth_mismatch_lists_missing_and_unexpected_keys():
    with pytest.raises(CheckpointMismatchError) as info:
        load_alignn_state_dict(model(), model(gcn_layers=1, alignn_layers=2).state_dict())
    message = str(info.value)
    assert "gcn_layers mismatch: checkpoint has 1, model has 2" in message
    assert "alignn_layers mismatch: checkpoint has 2, model has 1" in message
    assert "missing keys" in message and "gcn_layers.1.src_gate.weight" in message
    assert "unexpected keys" in message and "alignn_layers.1.node_update.src_gate.weight" in message


def test_non_strict_load_skips_only_what_does_not_fit():
    source, target = model(seed=1, output_features=3), model(seed=2)
    before = target.fc.weight.detach().clone()
    result = load_alignn_state_dict(target, source.state_dict(), strict=False)
    assert result.mismatched == ["fc.weight", "fc.bias"]
    torch.testing.assert_close(target.fc.weight, before)
    torch.testing.assert_close(
        target.atom_embedding.layer[0].weight, source.atom_embedding.layer[0].weight
    )


def test_infer_config_reads_widths_and_depths():
    cfg = SMALL.model_copy(update={"output_features": 4, "edge_input_features": 20})
    assert infer_config(ALIGNN(cfg).state_dict()) == cfg


def test_rejects_things_that_are_not_state_dicts():
    with pytest.raises(TypeError):
        read_alignn_state_dict({"weights": [1, 2]})
    with pytest.raises(TypeError):
        read_alignn_state_dict([1, 2])  # type: ignore[arg-type]
