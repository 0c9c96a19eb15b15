"""AdamW parameter groups and the one-cycle schedule stepped per batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tlsearch.training.config import TrainConfig
from tlsearch.training.optim import build_optimizer, build_scheduler


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.LayerNorm(8), nn.Linear(8, 1))


def test_no_weight_decay_on_biases_and_norm_parameters():
    net = _net()
    opt = build_optimizer(net.named_parameters(), TrainConfig(weight_decay=1e-5))
    by_decay = {g["weight_decay"]: set(g["names"]) for g in opt.param_groups}
    assert by_decay[1e-5] == {"0.weight", "3.weight"}
    assert by_decay[0.0] == {"0.bias", "1.weight", "1.bias", "2.weight", "2.bias", "3.bias"}
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["lr"] == pytest.approx(1e-3) for g in opt.param_groups)


def test_frozen_parameters_are_excluded():
    net = _net()
    for p in net[0].parameters():
        p.requires_grad_(False)
    opt = build_optimizer(net.named_parameters(), TrainConfig())
    names = {n for g in opt.param_groups for n in g["names"]}
    assert "0.weight" not in names and "0.bias" not in names
    for p in net.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(net.named_parameters(), TrainConfig())


def test_onecycle_lr_trace_per_batch():
    cfg = TrainConfig(epochs=4, learning_rate=1e-2)
    opt = build_optimizer(_net().named_parameters(), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(cfg.epochs * 5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1e-2)
    # pct_start 0.3 of 20 steps: the peak is at step 6 (0-based: round(0.3 * 20) - 1 = 5).
    assert peak == 5
    assert lrs[0] == pytest.approx(1e-2 / 25)  # OneCycleLR's default div_factor
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1 : peak + 1], strict=True))
    assert all(a > b for a, b in zip(lrs[peak:-1], lrs[peak + 1 :], strict=True))
    assert lrs[-1] < 1e-5


def test_constant_schedule():
    cfg = TrainConfig(scheduler="none")
    opt = build_optimizer(_net().named_parameters(), cfg)
    assert build_scheduler(opt, cfg, steps_per_epoch=3) is None
