"""The EMA of the weights (``train.ema_decay``): training itself is untouched, validation and
the weights kept are the average's; off changes nothing; resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlsearch.training.config import TrainConfig
from tlsearch.training.ema import WeightAverage
from tlsearch.training.loop import GraphLoader, fit

CPU = torch.device("cpu")


def _fit(store, model, **recipe):
    idx = np.arange(len(store))
    train = GraphLoader(store, idx[:32], store.targets, 8, shuffle=True, seed=0)
    val = GraphLoader(store, idx[32:], store.targets, 8)
    cfg = TrainConfig(epochs=4, learning_rate=1e-2, device="cpu", weights="last", **recipe)
    return fit(model, train, val, cfg, device=CPU, progress=False)


def test_the_average_follows_the_formula():
    model = torch.nn.Linear(2, 1)
    model.bias.requires_grad_(False)
    ema = WeightAverage(model, 0.9)
    assert ema.names == ["weight"]
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()
    torch.testing.assert_close(ema.average[0], start + 0.1)
    with ema.applied():
        torch.testing.assert_close(model.weight.detach(), start + 0.1)
    torch.testing.assert_close(model.weight.detach(), start + 1.0)  # raw weights back
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(model, 1.0)


def test_ema_changes_validation_and_the_kept_weights_not_training(store_factory, model_factory):
    store = store_factory()
    off = _fit(store, model_factory())
    again = _fit(store, model_factory())
    assert off.history == [
        {**r, "seconds": s["seconds"]} for r, s in zip(again.history, off.history, strict=True)
    ]  # off: reproducible, as before
    model = model_factory()
    on = _fit(store, model, ema_decay=0.8)
    train_loss = [r["train_loss"] for r in on.history]
    assert train_loss == [r["train_loss"] for r in off.history]  # the raw weights train alike
    assert [r["val_mae"] for r in on.history] != [r["val_mae"] for r in off.history]
    raw = model_factory()
    _fit(store, raw)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, raw.state_dict()[k])]
    assert changed  # the model keeps the average, not the raw weights


def test_a_tiny_decay_is_the_raw_weights(store_factory, model_factory):
    store = store_factory()
    raw, near = model_factory(), model_factory()
    _fit(store, raw)
    _fit(store, near, ema_decay=1e-12)
    for key, value in raw.state_dict().items():
        torch.testing.assert_close(near.state_dict()[key], value, atol=1e-6, rtol=0)
