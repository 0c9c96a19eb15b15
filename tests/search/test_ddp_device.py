"""Every tensor the DDP PT loop hands to a collective lives on ``ray.train.torch.get_device()``
(NCCL rejects CPU tensors: a GPU run crashed at the end of its first epoch).

One rank, in-process, on the CPU: Ray Train's context, device and model wrapper are one-rank
stand-ins and the collectives are wrapped to check what they receive. On a CPU every tensor is
on the CPU, so a plain device check would pass a tensor made without ``device=``, which on a GPU
node is a CPU tensor. A torch function mode therefore marks every tensor a factory
(``torch.zeros``, ``torch.tensor``, ...) made without a device argument, and the wrapped
collectives refuse those as well as any tensor not on ``get_device()``.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

from tlsearch.search import ddp
from tlsearch.search.jobs import DataRef, JobConfig, training_run_config

pytest.importorskip("ray.train")

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}
FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.tensor, torch.as_tensor,
             torch.arange, torch.rand, torch.randn}  # fmt: skip
COLLECTIVES = ("all_reduce", "broadcast", "reduce", "all_gather", "all_gather_into_tensor",
               "reduce_scatter", "reduce_scatter_tensor", "all_to_all_single")  # fmt: skip


class _OneRank:
    def get_world_rank(self) -> int:
        return 0

    def get_world_size(self) -> int:
        return 1


class DevicelessFactories(TorchFunctionMode):
    """Remembers the tensors that factories made without an explicit ``device``."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in FACTORIES and kwargs.get("device") is None:
            self.made.append(out)
        return out


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

    def checked(name):
        def collective(*args, **kwargs):
            for tensor in _tensors([*args, *kwargs.values()]):
                received.append((name, tensor.device))
                assert tensor.device == device, f"{name} got a tensor on {tensor.device}"
                assert not any(tensor is t for t in mode.made), (
                    f"{name} got a tensor made without device=: on a GPU it is a CPU tensor"
                )
            return None  # one rank: every collective leaves its tensors as they are

        return collective

    monkeypatch.setattr(ray.train, "get_context", lambda: _OneRank())
    monkeypatch.setattr(ray.train.torch, "get_device", lambda: device)
    monkeypatch.setattr(ray.train.torch, "prepare_model", lambda model: model.to(device))
    for name in COLLECTIVES:
        monkeypatch.setattr(dist, name, checked(name))
    ref = DataRef(name="A", data="generated:16:1", size=None, test_fraction=0)
    train = {"epochs": 2, "device": "cpu", "num_threads": 1, "batch_size": 8}
    job = JobConfig(kind="pretrain", seed=0, data=ref, train=train, model=TINY)
    run = training_run_config(job, ref, tmp_path / "w")
    with mode:
        out = ddp.ddp_train_loop({"run": run.model_dump(mode="json"), "size": None})
    assert out["metrics"]["epochs_run"] == 2 and not out["metrics"]["diverged"]
    assert [name for name, _ in received] == ["all_reduce", "all_reduce"]  # once per epoch
