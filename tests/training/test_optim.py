"""AdamW parameter groups, the one-cycle schedule stepped per batch, and the optimiser being
PyTorch's AdamW without the torch._dynamo import."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from tlsearch.training.config import TrainConfig
from tlsearch.training.optim import EagerAdamW, StepThreads, build_optimizer, build_scheduler

REPO = Path(__file__).resolve().parents[2]


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


def _one_cycle_run(net: nn.Module, optimizer_cls: type, fused: bool | None) -> nn.Module:
    """40 AdamW + one-cycle steps of a copy of ``net`` on seeded random batches."""
    net = copy.deepcopy(net)
    groups = [
        {"params": [p for p in net.parameters() if p.ndim >= 2], "weight_decay": 1e-2},
        {"params": [p for p in net.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = optimizer_cls(groups, lr=1e-2, fused=fused)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=40)
    gen = torch.Generator().manual_seed(1)
    for step in range(40):
        x, y = torch.randn(16, 4, generator=gen), torch.randn(16, 1, generator=gen)
        opt.zero_grad(set_to_none=step % 2 == 0)
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
        sched.step()
        if step == 20:  # a state round trip mid-run changes nothing
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    return net


@pytest.mark.parametrize("fused", [True, None])
def test_eager_adamw_matches_torch_adamw_bitwise(fused):
    torch.manual_seed(0)
    net = _net()
    ours = _one_cycle_run(net, EagerAdamW, fused)
    torch_s = _one_cycle_run(net, torch.optim.AdamW, fused)
    for (name, a), b in zip(ours.named_parameters(), torch_s.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, b) for a, b in zip(ours.parameters(), net.parameters()))


def test_eager_adamw_step_leaves_grad_mode_alone():
    net = _net()
    opt = EagerAdamW(net.parameters(), lr=1e-3)
    net(torch.randn(4, 4)).sum().backward()
    opt.step()
    assert torch.is_grad_enabled()
    assert all(not p.requires_grad or p.grad_fn is None for p in net.parameters())


def test_training_does_not_import_torch_dynamo():
    """The optimiser's torch.compile markers would import torch._dynamo (1.2-1.6 s)."""
    code = textwrap.dedent(
        """
        import sys

        import numpy as np
        import torch

        from tests.training.conftest import FakeStore, TinyModel
        from tlsearch.training.config import TrainConfig
        from tlsearch.training.loop import GraphLoader, fit

        store = FakeStore(24)
        idx = np.arange(24)
        train = GraphLoader(store, idx[:16], store.targets, 8, shuffle=True, seed=0)
        val = GraphLoader(store, idx[16:], store.targets, 8)
        fit(TinyModel(), train, val, TrainConfig(epochs=3, batch_size=8), progress=False)
        assert "torch._dynamo" not in sys.modules, "torch._dynamo was imported"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_step_threads_picks_the_faster_count_after_its_trials(monkeypatch):
    """A fake clock: a step takes 5 s on the slow thread count, 1 s on the other."""
    _threads, clock, seen = [2], [0.0], []
    monkeypatch.setattr(torch, "get_num_threads", lambda: _threads[0])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: _threads.__setitem__(0, n))

    def step(slow_threads: int) -> None:
        seen.append(_threads[0])
        clock[0] += 5.0 if _threads[0] == slow_threads else 1.0

    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    for slow, fast in ((2, 1), (1, 2)):
        _threads[0] = 2
        seen.clear()
        chooser = StepThreads(active=True)
        for _ in range(1 + 2 * StepThreads.TRIALS + 3):
            chooser.run(lambda slow=slow: step(slow))
            assert _threads[0] == 2  # the caller's count is restored after every step
        assert chooser.one_thread is (fast == 1)
        assert seen[0] == 2  # the untimed first step
        assert seen[1 : 1 + 2 * StepThreads.TRIALS].count(1) == StepThreads.TRIALS
        assert seen[-3:] == [fast] * 3  # the remaining steps run on the faster count
        _threads[0] = 3  # the caller's thread count changes later on
        chooser.run(lambda slow=slow: step(slow))
        assert seen[-1] == (1 if fast == 1 else 3)


def test_step_threads_stays_out_of_the_way_off_cpu_and_on_one_thread(monkeypatch):
    calls = []
    chooser = StepThreads(active=False)
    for _ in range(10):
        chooser.run(lambda: calls.append(torch.get_num_threads()))
    assert chooser.one_thread is None and len(set(calls)) == 1


def test_eager_adamw_on_either_thread_count_matches_torch_adamw_bitwise():
    """Tensors large enough to be split over threads; the chooser times one and two threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(256, 512), nn.LayerNorm(512), nn.Linear(512, 1))
        ours_net, theirs_net = copy.deepcopy(net), copy.deepcopy(net)
        ours = EagerAdamW(ours_net.parameters(), lr=1e-2, weight_decay=1e-2, fused=True)
        theirs = torch.optim.AdamW(theirs_net.parameters(), lr=1e-2, weight_decay=1e-2, fused=True)
        gen = torch.Generator().manual_seed(2)
        for _ in range(2 + 2 * StepThreads.TRIALS):
            x, y = torch.randn(32, 256, generator=gen), torch.randn(32, 1, generator=gen)
            for model, opt in ((ours_net, ours), (theirs_net, theirs)):
                opt.zero_grad()
                ((model(x) - y) ** 2).mean().backward()
                opt.step()
        assert ours._step_threads.one_thread is not None
        for a, b in zip(ours_net.parameters(), theirs_net.parameters(), strict=True):
            assert torch.equal(a, b)
    finally:
        torch.set_num_threads(before)
