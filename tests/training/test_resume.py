"""Mid-training checkpoints: a run interrupted after a checkpoint resumes there and ends exactly
as an uninterrupted run (same history, best epoch, weights and predictions)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tlsearch.training.config import RunConfig, TrainConfig
from tlsearch.training.loop import GraphLoader, fit
from tlsearch.training.resume import state_from_bytes, state_to_bytes
from tlsearch.training.run import train_run

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}


class MemoryCheckpoints:
    """Checkpoints kept as bytes (as a file would keep them)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.saved: list[int] = []
        self.data: bytes | None = None

    def load(self):
        return None if self.data is None else state_from_bytes(self.data)

    def save(self, state) -> None:
        self.saved.append(state["epoch"])
        self.data = state_to_bytes(state)


class PreemptedError(Exception):
    pass


class DiesAtEpoch(GraphLoader):
    """A training loader whose process "dies" when epoch ``die`` starts."""

    die = 0

    def batches(self, epoch: int = 0):
        if epoch == self.die:
            raise PreemptedError(f"killed at epoch {epoch}")
        return super().batches(epoch)


def _fit(store, model, checkpoints=None, die=0, **recipe):
    idx = np.arange(len(store))
    DiesAtEpoch.die = die
    train = DiesAtEpoch(store, idx[:32], store.targets, 8, shuffle=True, seed=0)
    val = GraphLoader(store, idx[32:], store.targets, 8)
    cfg = TrainConfig(epochs=9, device="cpu", early_stopping_patience=None, scheduler="onecycle",
                      **recipe)  # fmt: skip
    return fit(model, train, val, cfg, progress=False, checkpoints=checkpoints)


@pytest.mark.parametrize("recipe", [{}, {"ema_decay": 0.7, "layer_lr_decay": 0.5}])
def test_an_interrupted_fit_resumes_and_ends_as_an_uninterrupted_one(
    store_factory, model_factory, recipe
):
    store = store_factory(40)
    whole = model_factory()
    reference = _fit(store, whole, **recipe)
    checkpoints = MemoryCheckpoints(every=2)
    with pytest.raises(PreemptedError):
        _fit(store, model_factory(), checkpoints, die=6, **recipe)  # after the epoch-4 checkpoint
    assert checkpoints.saved == [2, 4]
    resumed_model = model_factory(seed=99)  # a fresh process: other initial weights
    resumed = _fit(store, resumed_model, checkpoints, **recipe)
    assert resumed.resumed_from_epoch == 4 and reference.resumed_from_epoch is None
    assert checkpoints.saved == [2, 4, 6, 8]  # not after the last epoch
    assert [r["val_mae"] for r in resumed.history] == [r["val_mae"] for r in reference.history]
    assert (resumed.best_epoch, resumed.epochs_run) == (reference.best_epoch, 9)
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value, rtol=0, atol=0)


def test_a_checkpoint_of_another_recipe_is_not_resumed(store_factory, model_factory, caplog):
    store = store_factory(40)
    checkpoints = MemoryCheckpoints(every=2)
    with pytest.raises(PreemptedError):
        _fit(store, model_factory(), checkpoints, die=3)
    idx = np.arange(len(store))
    train = GraphLoader(store, idx[:32], store.targets, 4, shuffle=True)  # another batch size
    val = GraphLoader(store, idx[32:], store.targets, 4)
    cfg = TrainConfig(epochs=9, device="cpu", early_stopping_patience=None)
    result = fit(model_factory(), train, val, cfg, progress=False, checkpoints=checkpoints)
    assert result.resumed_from_epoch is None and len(result.history) == 9
    assert "made by another recipe" in caplog.text


def test_train_run_resumes_and_says_so(tmp_path, monkeypatch):
    def run(out):
        recipe = {"epochs": 6, "device": "cpu", "num_threads": 1, "batch_size": 8}
        return RunConfig(data="generated:40:2", out_dir=tmp_path / out, cache_dir=tmp_path / "c",
                         model=TINY, train=recipe)  # fmt: skip

    reference = train_run(run("whole"), progress=False)
    checkpoints = MemoryCheckpoints(every=2)
    real_save = MemoryCheckpoints.save

    def save_then_die(self, state):
        real_save(self, state)
        if state["epoch"] == 4:
            raise PreemptedError("the node went away")

    monkeypatch.setattr(MemoryCheckpoints, "save", save_then_die)
    with pytest.raises(PreemptedError):
        train_run(run("cut"), progress=False, checkpoints=checkpoints)
    monkeypatch.setattr(MemoryCheckpoints, "save", real_save)
    resumed = train_run(run("cut"), progress=False, checkpoints=checkpoints)
    assert (resumed["resumed_from_epoch"], reference["resumed_from_epoch"]) == (4, None)
    assert resumed["train_seconds"] > 0 and resumed["epochs_run"] == reference["epochs_run"]
    assert resumed["val"] == reference["val"]
    on_disk = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert set(on_disk) == set(reference)  # the same fields as an uninterrupted run
    for name in ("predictions_val.csv", "history.csv"):
        cut, whole = ((tmp_path / d / name).read_text().splitlines() for d in ("cut", "whole"))
        assert len(cut) == len(whole)
        if name == "predictions_val.csv":
            assert cut == whole
