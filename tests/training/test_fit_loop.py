"""The training loop on a fake store and a tiny model: batches, loss, early stopping, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tlsearch.training.config import TrainConfig
from tlsearch.training.loop import (
    EarlyStopping,
    GraphLoader,
    fit,
    masked_loss,
    predict_batches,
    validation_scores,
)

CPU = torch.device("cpu")


def _loaders(store, batch_size=8, seed=0):
    idx = np.arange(len(store))
    train = GraphLoader(store, idx[:32], store.targets, batch_size, shuffle=True, seed=seed)
    val = GraphLoader(store, idx[32:], store.targets, batch_size)
    return train, val


def test_loader_drops_nothing_and_reshuffles_reproducibly(store_factory):
    store = store_factory(23)
    loader = GraphLoader(store, np.arange(23), store.targets, 5, shuffle=True, seed=7)
    assert len(loader) == 5
    ids0 = [i for b in loader.batches(0) for i in b.ids]
    ids1 = [i for b in loader.batches(1) for i in b.ids]
    assert sorted(ids0) == sorted(store.ids) and len(ids0) == 23
    assert ids0 != ids1
    assert ids0 == [i for b in loader.batches(0) for i in b.ids]
    batch = next(iter(loader.batches(0)))
    assert batch.targets.shape == (5, 1) and batch.targets.dtype == torch.float32
    assert batch.target_mask.all()
    plain = GraphLoader(store, [3, 1, 2], None, 2)
    assert [i for b in plain.batches(4) for i in b.ids] == ["s3", "s1", "s2"]
    assert next(iter(plain.batches())).targets is None


def test_unknown_targets_become_a_false_mask(store_factory):
    store = store_factory(4)
    targets = np.array([[1.0, np.nan], [2.0, 3.0], [np.nan, 4.0], [0.0, 0.0]])
    batch = next(iter(GraphLoader(store, np.arange(4), targets, 4).batches()))
    assert batch.target_mask.tolist() == [[True, False], [True, True], [False, True], [True, True]]
    assert torch.isfinite(batch.targets).all()


def test_masked_loss_averages_known_entries_only():
    pred = torch.tensor([[1.0, 5.0], [2.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[True, False], [True, True]])
    assert masked_loss(pred, target, mask, "mse").item() == pytest.approx((1 + 4 + 0) / 3)
    assert masked_loss(pred, target, mask, "l1").item() == pytest.approx((1 + 2 + 0) / 3)
    assert masked_loss(pred, target, None, "mse").item() == pytest.approx((1 + 25 + 4) / 4)
    nothing = torch.zeros_like(mask)
    assert masked_loss(pred, target, nothing, "mse").item() == 0.0
    with pytest.raises(ValueError, match="unknown loss"):
        masked_loss(pred, target, mask, "huber")


def test_validation_scores_skip_unknown():
    loss, mae = validation_scores(np.array([[1.0], [3.0]]), np.array([[0.0], [np.nan]]), "mse")
    assert (loss, mae) == (1.0, 1.0)


def test_early_stopping_counts_epochs_without_improvement():
    stopper = EarlyStopping(patience=2)
    assert stopper.update(1, 1.0)
    assert not stopper.update(2, 1.0)  # equal is not better
    assert not stopper.should_stop
    assert not stopper.update(3, math.nan)
    assert stopper.should_stop and stopper.best_epoch == 1
    assert not EarlyStopping(None).should_stop


class WorseningVal:
    """Validation data whose targets move away every evaluation: epoch 1 is always the best.

    It also snapshots the model's weights at the first evaluation.
    """

    def __init__(self, store, model):
        self.loader = GraphLoader(store, np.arange(32, 40), store.targets, 8)
        self.model = model
        self.calls = 0
        self.first_state = None

    @property
    def num_structures(self):
        return self.loader.num_structures

    def __len__(self):
        return len(self.loader)

    def batches(self, epoch=0):
        self.calls += 1
        if self.calls == 1:
            self.first_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        for batch in self.loader.batches(epoch):
            batch.targets = batch.targets + 1000.0 * self.calls
            yield batch


def test_fit_stops_at_patience_and_restores_best_weights(store_factory, model_factory):
    store = store_factory()
    model = model_factory()
    train, _ = _loaders(store)
    val = WorseningVal(store, model)
    cfg = TrainConfig(
        epochs=50, early_stopping_patience=3, early_stopping_after_warmup=False,
        learning_rate=1e-2, device="cpu",
    )  # fmt: skip
    result = fit(model, train, val, cfg, device=CPU, progress=False)
    assert result.best_epoch == 1
    assert result.epochs_run == 4 and result.early_stopped and not result.diverged
    assert len(result.history) == 4
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, val.first_state[key], msg=key)


def test_fit_best_epoch_matches_restored_model(store_factory, model_factory):
    store = store_factory()
    model = model_factory()
    train, val = _loaders(store)
    cfg = TrainConfig(epochs=12, learning_rate=1e-2, device="cpu", early_stopping_patience=None)
    result = fit(model, train, val, cfg, device=CPU, progress=False)
    assert result.epochs_run == 12 and not result.early_stopped
    best = min(result.history, key=lambda r: r["val_mae"])
    assert best["epoch"] == result.best_epoch
    _, pred, true = predict_batches(model, val, CPU)
    assert validation_scores(pred, true, "mse")[1] == pytest.approx(best["val_mae"], rel=1e-6)
    assert result.train_structures_per_second > 0
    assert set(result.history[0]) == {"epoch", "train_loss", "val_loss", "val_mae", "lr", "seconds"}
    assert result.history[-1]["val_mae"] < result.history[0]["val_mae"]


def test_same_seed_same_history(store_factory, model_factory):
    def run(seed):
        store = store_factory()
        train, val = _loaders(store, seed=seed)
        cfg = TrainConfig(epochs=4, seed=seed, device="cpu")
        torch.manual_seed(seed)
        result = fit(model_factory(seed=seed), train, val, cfg, device=CPU, progress=False)
        return [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]

    assert run(0) == run(0)
    assert run(0) != run(1)


class ExplodingModel(torch.nn.Module):
    """Wraps a model; its training outputs become NaN from the 6th training batch on."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, batch):
        out = self.inner(batch)
        if self.training:
            self.calls += 1
            if self.calls > 5:
                return out * math.nan
        return out


def test_divergence_stops_and_keeps_the_best_weights(store_factory, model_factory):
    store = store_factory()
    train, val = _loaders(store)  # 4 batches per epoch: NaN in epoch 2
    model = ExplodingModel(model_factory())
    result = fit(
        model, train, val, TrainConfig(epochs=10, device="cpu"), device=CPU, progress=False
    )
    assert result.diverged and result.epochs_run == 2 and result.best_epoch == 1
    assert math.isnan(result.history[-1]["val_mae"])
    _, pred, _ = predict_batches(model, val, CPU)
    assert np.isfinite(pred).all()


def test_multi_target_fit_with_missing_values(store_factory, model_factory):
    store = store_factory()
    targets = np.concatenate([store.targets, -store.targets], axis=1)
    targets[::3, 1] = np.nan
    idx = np.arange(len(store))
    train = GraphLoader(store, idx[:32], targets, 8, shuffle=True)
    val = GraphLoader(store, idx[32:], targets, 8)
    result = fit(
        model_factory(outputs=2), train, val, TrainConfig(epochs=3, device="cpu"), progress=False
    )
    assert all(math.isfinite(r["train_loss"]) for r in result.history)


def test_validation_loss_of_masked_l1_is_eq_1_not_the_pooled_mae():
    pred = np.zeros((2, 2))
    target = np.array([[1.0, 3.0], [1.0, np.nan]])
    # pooled MAE over the 3 known entries: 5/3; Eq. 1 per structure, then over structures
    loss, mae = validation_scores(pred, target, "masked_l1", "n_properties")
    assert mae == pytest.approx(5 / 3)
    assert loss == pytest.approx((4 / 2 + 1 / 2) / 2)
    loss, _ = validation_scores(pred, target, "masked_l1", "known")
    assert loss == pytest.approx((4 / 2 + 1 / 1) / 2)


def _scripted_validation(monkeypatch, scores):
    """Replace ``validate`` by one that returns ``scores[epoch - 1]`` = (loss, MAE)."""
    from tlsearch.training import loop

    seen = []

    def fake(model, val, device, loss_kind, denominator="n_properties", distributed=None):
        seen.append(denominator)
        return scores[len(seen) - 1]

    monkeypatch.setattr(loop, "validate", fake)
    return seen


# epoch 1 has the lowest pooled MAE, epoch 2 the lowest validation loss
SCORES = [(1.0, 0.5), (0.8, 0.9), (1.2, 1.0), (1.3, 1.1)]


def test_mpt_early_stopping_follows_the_validation_masked_loss(
    monkeypatch, store_factory, model_factory
):
    seen = _scripted_validation(monkeypatch, SCORES)
    train, val = _loaders(store_factory())
    cfg = TrainConfig(
        epochs=10, loss="masked_l1", mpt_loss_denominator="known", early_stopping_patience=2,
        early_stopping_after_warmup=False, device="cpu",
    )  # fmt: skip
    result = fit(model_factory(), train, val, cfg, device=CPU, progress=False)
    assert result.monitor == "val_loss"
    assert result.best_epoch == 2 and result.epochs_run == 4 and result.early_stopped
    assert (result.best_val_loss, result.best_val_mae) == (0.8, 0.9)
    assert seen == ["known"] * 4  # the configured denominator reaches validation


def test_single_property_early_stopping_keeps_the_validation_mae(
    monkeypatch, store_factory, model_factory
):
    _scripted_validation(monkeypatch, SCORES)
    train, val = _loaders(store_factory())
    cfg = TrainConfig(
        epochs=10, loss="l1", early_stopping_patience=2, early_stopping_after_warmup=False,
        device="cpu",
    )  # fmt: skip
    result = fit(model_factory(), train, val, cfg, device=CPU, progress=False)
    assert result.monitor == "val_mae" and result.best_epoch == 1 and result.epochs_run == 3


@pytest.mark.parametrize("denominator", ["n_properties", "known"])
def test_masked_l1_fit_records_and_restores_by_the_masked_loss(
    denominator, store_factory, model_factory
):
    from tlsearch.training import loop

    store = store_factory()
    # two properties, the second known for a quarter of the structures only
    second = np.where(np.arange(len(store))[:, None] % 4 == 0, 2.0 * store.targets, np.nan)
    targets = np.hstack([store.targets, second])
    idx = np.arange(len(store))
    train = GraphLoader(store, idx[:32], targets, 8, shuffle=True)
    val = GraphLoader(store, idx[32:], targets, 8)
    model = model_factory(outputs=2)
    cfg = TrainConfig(
        epochs=3, loss="masked_l1", mpt_loss_denominator=denominator, learning_rate=1e-2,
        device="cpu", early_stopping_patience=None,
    )  # fmt: skip
    result = fit(model, train, val, cfg, device=CPU, progress=False)
    best = min(result.history, key=lambda r: r["val_loss"])
    assert result.best_epoch == best["epoch"] and result.best_val_loss == best["val_loss"]
    _, pred, true = predict_batches(model, val, CPU)  # the restored best weights
    expected = loop.masked_l1(
        torch.from_numpy(pred), torch.from_numpy(np.nan_to_num(true)),
        torch.from_numpy(np.isfinite(true)), denominator,
    )  # fmt: skip
    assert best["val_loss"] == pytest.approx(float(expected), rel=1e-6)
    assert best["val_loss"] != pytest.approx(best["val_mae"])


def test_patience_is_not_counted_during_the_one_cycle_warm_up(store_factory, model_factory):
    """A run whose validation MAE never improves after epoch 1 stops only after the one-cycle
    peak (epoch ceil(0.3 x 20) = 6) plus patience 3, not at epoch 4."""
    store = store_factory()
    model = model_factory()
    train, _ = _loaders(store)
    cfg = TrainConfig(epochs=20, early_stopping_patience=3, learning_rate=1e-2, device="cpu")
    assert cfg.patience_start_epoch() == 6
    result = fit(model, train, WorseningVal(store, model), cfg, device=CPU, progress=False)
    assert result.best_epoch == 1
    assert result.epochs_run == 9 and result.early_stopped


def test_patience_counts_from_epoch_one_without_warm_up_gate():
    assert TrainConfig(early_stopping_after_warmup=False).patience_start_epoch() == 0
    assert TrainConfig(scheduler="none").patience_start_epoch() == 0
    assert TrainConfig().patience_start_epoch() == 150


@pytest.mark.parametrize("weights", ["best", "last"])
def test_the_run_keeps_the_best_or_the_last_epochs_weights(store_factory, model_factory, weights):
    from tlsearch.training.loop import validate

    store = store_factory(40)
    train, val = _loaders(store)
    cfg = TrainConfig(epochs=12, device="cpu", learning_rate=0.5, scheduler="none",
                      early_stopping_patience=None, weights=weights)  # fmt: skip
    model = model_factory()
    result = fit(model, train, val, cfg, progress=False)
    kept = result.best_epoch if weights == "best" else result.epochs_run
    _, mae = validate(model, val, CPU, "mse")
    assert mae == pytest.approx(result.history[kept - 1]["val_mae"], rel=1e-6)
    assert result.best_epoch != result.epochs_run  # the two choices differ here
    if weights == "last":
        assert result.final_state is None  # the model holds the final weights already
        return
    model.load_state_dict(result.final_state)  # the final epoch's, kept beside the best
    _, mae = validate(model, val, CPU, "mse")
    assert mae == pytest.approx(result.history[-1]["val_mae"], rel=1e-6)
