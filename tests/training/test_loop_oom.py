"""A CUDA out-of-memory in training or evaluation is named with its batch size and propagates:
never a ``diverged`` fit result (the search retries it at a smaller batch)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from tlsearch.training.config import TrainConfig
from tlsearch.training.loop import GraphLoader, TrainingOutOfMemoryError, fit, predict_batches

CPU = torch.device("cpu")
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 20.00 GiB total capacity)"


def _out_of_memory_after(model, calls: int):
    forward, seen = model.forward, [0]

    def patched(batch):
        seen[0] += 1
        if seen[0] > calls:
            raise torch.cuda.OutOfMemoryError(OOM)
        return forward(batch)

    model.forward = patched
    return model


def test_an_out_of_memory_in_training_is_no_divergence(store_factory, model_factory):
    store = store_factory(40)
    train = GraphLoader(store, np.arange(32), store.targets, 8, shuffle=True)
    val = GraphLoader(store, np.arange(32, 40), store.targets, 8)
    model = _out_of_memory_after(model_factory(), calls=2)
    cfg = TrainConfig(epochs=3, batch_size=8, device="cpu", early_stopping_patience=None)
    with pytest.raises(TrainingOutOfMemoryError, match="out of memory in a training batch "
                       r"\(batch_size 8\): CUDA out of memory. Tried") as info:  # fmt: skip
        fit(model, train, val, cfg, device=CPU, progress=False)
    assert info.value.batch_size == 8
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)
    copy = pickle.loads(pickle.dumps(info.value))  # as Ray hands worker errors back
    assert (str(copy), copy.batch_size) == (str(info.value), 8)


def test_an_out_of_memory_in_evaluation_is_named_too(store_factory, model_factory):
    store = store_factory(12)
    model = _out_of_memory_after(model_factory(), calls=0)
    with pytest.raises(TrainingOutOfMemoryError, match=r"evaluation batch \(batch_size 4\)"):
        predict_batches(model, GraphLoader(store, np.arange(12), store.targets, 4), CPU)
