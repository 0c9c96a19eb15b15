"""Layer-wise learning-rate decay (``train.layer_lr_decay``): off changes nothing, on gives each
trunk block its decayed rate through the one optimiser and schedule."""

from __future__ import annotations

import pytest
import torch

from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import ALIGNNConfig
from tlsearch.model.heads import HeadedBackbone
from tlsearch.training.config import TrainConfig
from tlsearch.training.optim import build_optimizer, build_scheduler, layer_depth
from tlsearch.training.resume import recipe_fingerprint


def _model() -> HeadedBackbone:
    torch.manual_seed(0)
    cfg = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden_features=8, embedding_features=4)
    return HeadedBackbone(ALIGNN(cfg), 1)


def test_off_is_the_recipe_as_before():
    cfg = TrainConfig()
    assert cfg.layer_lr_decay is None
    assert "layer_lr_decay" not in TrainConfig.model_validate({"epochs": 3}).model_dump(
        exclude_defaults=True
    )
    # the fingerprint of a recipe without the option is the one it always had
    on = TrainConfig(layer_lr_decay=0.5)
    assert recipe_fingerprint(cfg, 10, 2) != recipe_fingerprint(on, 10, 2)
    model = _model()
    opt = build_optimizer(model.named_parameters(), cfg)
    assert [g["lr"] for g in opt.param_groups] == [cfg.learning_rate] * len(opt.param_groups)
    assert len(opt.param_groups) == 2


def test_fingerprint_of_a_recipe_without_the_new_options_is_unchanged():
    """Pinned: the values main's code (before layer_lr_decay and ema_decay) computes."""
    assert recipe_fingerprint(TrainConfig(epochs=7), 10, 2) == "8c14221ee60eedc3"
    assert recipe_fingerprint(TrainConfig(), 100, 5) == "bf979048b6d379e2"
    assert recipe_fingerprint(TrainConfig(ema_decay=0.99), 100, 5) != "bf979048b6d379e2"


def test_each_block_gets_its_decayed_rate():
    model = _model()
    cfg = TrainConfig(layer_lr_decay=0.5, learning_rate=1e-2, epochs=2)
    depth = layer_depth(model)
    opt = build_optimizer(model.named_parameters(), cfg, depth=depth)
    blocks = len(model.trunk.trunk_blocks())
    for group in opt.param_groups:
        for name in group["names"]:
            layer, total = depth(name)
            assert total == blocks + 1
            assert group["lr"] == pytest.approx(1e-2 * 0.5 ** (total - layer))
            if name.startswith("trunk.atom_embedding"):
                assert layer == 1
            if name.startswith(("trunk.fc", "new_layers")):
                assert layer == blocks + 1
    scheduler = build_scheduler(opt, cfg, steps_per_epoch=3)
    rates = [g["lr"] for g in opt.param_groups]
    ratio = [r / max(rates) for r in rates]
    for _ in range(3):
        opt.step()
        scheduler.step()
    after = [g["lr"] for g in opt.param_groups]
    assert [a / max(after) for a in after] == pytest.approx(ratio)  # one schedule, scaled
