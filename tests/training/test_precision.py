"""``train.precision`` and the GPU loss path, checked on the CPU: fp32 is the default and
unchanged, tf32/bf16 fall back to fp32 without CUDA (said and recorded), the TF32 switches are
restored, and the deferred (once-per-epoch) loss gives the same epoch loss and still catches a
non-finite one."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch

from tlsearch.training.config import TrainConfig
from tlsearch.training.loop import GraphLoader, fit, train_one_epoch
from tlsearch.training.optim import build_optimizer
from tlsearch.training.precision import (
    effective_precision,
    matmul_precision,
    training_autocast,
)

CPU = torch.device("cpu")


def _fit(store, model, **cfg):
    idx = np.arange(len(store))
    train = GraphLoader(store, idx[:32], store.targets, 8, shuffle=True)
    val = GraphLoader(store, idx[32:], store.targets, 8)
    config = TrainConfig(epochs=3, device="cpu", early_stopping_patience=None, **cfg)
    return fit(model, train, val, config, progress=False)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_without_cuda_other_precisions_train_in_fp32(store_factory, model_factory, precision,
                                                      caplog):  # fmt: skip
    reference = _fit(store_factory(40), model_factory())
    result = _fit(store_factory(40), model_factory(), precision=precision)
    assert (reference.precision, result.precision) == ("fp32", "fp32")
    assert f"precision {precision} needs CUDA" in caplog.text
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in reference.history]


def test_tf32_switches_are_restored():
    before = torch.backends.cuda.matmul.allow_tf32
    with matmul_precision("tf32"):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 == before
    assert effective_precision("bf16", torch.device("cuda")) == "bf16"
    assert isinstance(training_autocast("bf16", CPU), contextlib.nullcontext)
    assert isinstance(training_autocast("fp32", torch.device("cuda")), contextlib.nullcontext)


def _epoch(store, model, defer):
    idx = np.arange(len(store))
    loader = GraphLoader(store, idx, store.targets, 8, shuffle=True)
    optimizer = build_optimizer(model.named_parameters(), TrainConfig())
    return train_one_epoch(model, loader, optimizer, None, "mse", CPU, 1, defer_loss=defer)


def test_the_deferred_loss_path_gives_the_same_epoch(store_factory, model_factory):
    now = _epoch(store_factory(40), model_factory(), defer=False)
    deferred = _epoch(store_factory(40), model_factory(), defer=True)
    assert deferred.loss == pytest.approx(now.loss, rel=1e-12) and not deferred.diverged
    assert deferred.structures == now.structures == 40
    broken = model_factory()
    with torch.no_grad():
        broken.head.bias.fill_(math.nan)  # every batch loss is NaN
    result = _epoch(store_factory(40), broken, defer=True)
    assert result.diverged and math.isnan(result.loss)
