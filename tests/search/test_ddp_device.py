"""Every tensor the DDP PT loop hands to a collective lives on ``ray.train.torch.get_device()``
(NCCL rejects CPU tensors: a GPU run crashed at the end of its first epoch).

One rank, in-process, on the CPU: Ray Train's context and device are one-rank stand-ins and
the collectives are wrapped to check what they receive (then act as in a world of one). On a
CPU every tensor is on the CPU, so a plain device check would pass a tensor made without
``device=``, which on a GPU node is a CPU tensor. A torch function mode therefore marks every
tensor that a factory (``torch.zeros``, ``torch.tensor``, ...) called from outside torch made
without a device argument, and the wrapped collectives refuse those as well as any tensor not
on ``get_device()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

from tests.search.conftest import OneRankContext, one_rank_collectives
from tlsearch.jobs.config import DataRef, JobConfig
from tlsearch.jobs.run import training_run_config
from tlsearch.search.run import ddp

pytest.importorskip("ray.train")

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}
FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.tensor, torch.as_tensor,
             torch.arange, torch.rand, torch.randn}  # fmt: skip
COLLECTIVES = ("all_reduce", "broadcast", "reduce", "all_gather", "all_gather_into_tensor",
               "reduce_scatter", "reduce_scatter_tensor", "all_to_all_single")  # fmt: skip


TORCH_DIR = str(Path(torch.__file__).parent)


class DevicelessFactories(TorchFunctionMode):
    """Remembers the tensors that factories made without an explicit ``device``."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in FACTORIES and kwargs.get("device") is None and not _from_torch():
            self.made.append(out)
        return out


def _from_torch() -> bool:
    """Whether torch itself called the factory (e.g. a BatchNorm's buffers, which the model's
    ``.to(device)`` moves; only tensors our code makes are suspects)."""
    frame = sys._getframe(2)  # __torch_function__ <- the factory's caller
    return frame.f_code.co_filename.startswith(TORCH_DIR)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def test_collectives_receive_tensors_on_the_workers_device(tmp_path, monkeypatch):
    import ray.train
    import ray.train.torch

    device = torch.device("cpu")
    mode = DevicelessFactories()
    received: list[tuple[str, torch.device]] = []

    one_rank = one_rank_collectives()

    def checked(name):
        def collective(*args, **kwargs):
            for tensor in _tensors([*args, *kwargs.values()]):
                received.append((name, tensor.device))
                assert tensor.device == device, f"{name} got a tensor on {tensor.device}"
                assert not any(tensor is t for t in mode.made), (
                    f"{name} got a tensor made without device=: on a GPU it is a CPU tensor"
                )
            return one_rank.get(name, lambda *a, **k: None)(*args, **kwargs)

        return collective

    monkeypatch.setattr(ray.train, "get_context", lambda: OneRankContext())
    monkeypatch.setattr(ray.train.torch, "get_device", lambda: device)
    for name in COLLECTIVES:
        monkeypatch.setattr(dist, name, checked(name))
    ref = DataRef(name="A", data="generated:16:1", size=None, test_fraction=0)
    train = {"epochs": 2, "device": "cpu", "num_threads": 1, "batch_size": 8}
    job = JobConfig(kind="pretrain", seed=0, data=ref, train=train, model=TINY)
    run = training_run_config(job, ref, tmp_path / "w")
    with mode:
        out = ddp.ddp_train_loop({"run": run.model_dump(mode="json"), "size": None})
    assert out["metrics"]["epochs_run"] == 2 and not out["metrics"]["diverged"]
    names = [name for name, _ in received]
    assert names.count("all_reduce") == 2  # the epoch's loss, structures and divergence
    assert {"broadcast", "all_gather"} <= set(names)  # BatchNorm statistics, validation
