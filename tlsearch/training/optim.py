"""The one optimiser and scheduler path shared by scratch, PT, FT and MPT training.

AdamW with weight decay only on weight matrices (never on biases or normalisation parameters,
i.e. any parameter with fewer than 2 dimensions), and PyTorch's ``OneCycleLR`` stepped once per
batch with ``max_lr = learning_rate`` and ``total_steps = epochs * steps_per_epoch``.

The optimiser is PyTorch's AdamW without the ``torch.compile`` markers (:class:`EagerAdamW`):
they import ``torch._dynamo`` on first use, 1.2-1.6 s of every training process's start.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from tlsearch.model.backbone import Backbone, block_of, trunk_names
from tlsearch.training.config import TrainConfig

NamedParameters = Iterable[tuple[str, nn.Parameter]]


def decay_groups(named_parameters: NamedParameters, weight_decay: float) -> list[dict[str, object]]:
    """Split trainable parameters into a decayed group (ndim >= 2) and an undecayed one.

    Parameters with ``requires_grad=False`` (frozen layers) are left out. Groups carry the
    parameter names (``names``) for inspection; empty groups are dropped.

    Raises:
        ValueError: when no parameter is trainable.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    decay_names: list[str] = []
    no_decay_names: list[str] = []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        if param.ndim >= 2:
            decay.append(param)
            decay_names.append(name)
        else:
            no_decay.append(param)
            no_decay_names.append(name)
    groups: list[dict[str, object]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, "names": decay_names})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "names": no_decay_names})
    if not groups:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False")
    return groups


class EagerAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` that never imports ``torch._dynamo``: same code, same numbers.

    ``torch.optim.Optimizer`` marks ``add_param_group``, ``zero_grad``, ``state_dict`` and
    ``load_state_dict`` as not to be traced by ``torch.compile`` (``torch._disable_dynamo``), and
    ``Adam.step`` as a graph break (``_use_grad_for_differentiable``); each marker imports
    ``torch._dynamo`` on its first call. That import took 1.2-1.6 s (2-core CPU, torch 2.13):
    nearly half the start-up of a search's trial process, of every ``tlsearch train`` and every
    PT/FT job. tlsearch never compiles its training step, so this class binds PyTorch's own
    functions without those decorators (``inspect.unwrap``); ``step`` runs under
    ``torch.no_grad()`` as the decorator does for a non-differentiable optimiser. The update is
    PyTorch's (fused kernel, foreach or per-tensor loop alike): tests compare the parameters
    after a one-cycle run bitwise with ``torch.optim.AdamW``'s and check that training imports no
    ``torch._dynamo``. Do not use it inside ``torch.compile``.
    """

    add_param_group = inspect.unwrap(torch.optim.Optimizer.add_param_group)
    zero_grad = inspect.unwrap(torch.optim.Optimizer.zero_grad)
    state_dict = inspect.unwrap(torch.optim.Optimizer.state_dict)
    load_state_dict = inspect.unwrap(torch.optim.Optimizer.load_state_dict)
    _adamw_step = inspect.unwrap(torch.optim.AdamW.step)

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One AdamW update (PyTorch's ``AdamW.step``) of every parameter with a gradient, on
        CPU on the thread count :class:`StepThreads` measured faster."""
        threads = getattr(self, "_step_threads", None)
        if threads is None:
            threads = self._step_threads = StepThreads(self._on_cpu())
        with torch.no_grad():
            return threads.run(lambda: self._adamw_step(closure))

    def _on_cpu(self) -> bool:
        return all(p.device.type == "cpu" for g in self.param_groups for p in g["params"])


class StepThreads:
    """Runs a CPU optimiser step on torch's thread count or on one thread, whichever this
    optimiser's first steps measured faster; the update is the same either way (AdamW is
    elementwise: every element gets the same arithmetic whatever the thread split).

    Why measured: each parameter tensor's update is its own OpenMP region, and with sleeping
    workers (``OMP_WAIT_POLICY=PASSIVE``) every region pays a wake-up. For the paper's ALIGNN
    (190 tensors, 4.0M parameters) inside a training step on a 2-core Xeon: 15-16 ms on 2
    threads, 6-7 ms on one; a model with large tensors on many cores gains from the threads.
    After one untimed step (it creates the optimiser state), :data:`TRIALS` steps of each choice
    alternate, then the lower median wins for the optimiser's remaining steps.
    """

    TRIALS = 3

    def __init__(self, active: bool) -> None:
        self.active = active
        self.seconds: dict[bool, list[float]] = {True: [], False: []}  # by one_thread
        self.calls = 0
        self.one_thread: bool | None = None  # the choice, once made

    def run(self, step: Callable[[], Any]) -> Any:
        if not self.active or torch.get_num_threads() < 2:
            return step()
        self.calls += 1
        if self.one_thread is not None or self.calls == 1:
            return _on_one_thread(bool(self.one_thread), step)
        one = self.calls % 2 == 1
        start = time.perf_counter()
        result = _on_one_thread(one, step)
        self.seconds[one].append(time.perf_counter() - start)
        if min(len(times) for times in self.seconds.values()) >= self.TRIALS:
            self.one_thread = statistics.median(self.seconds[True]) < statistics.median(
                self.seconds[False]
            )
        return result


def _on_one_thread(one: bool, step: Callable[[], Any]) -> Any:
    """``step()``, with torch set to one thread while it runs when ``one``."""
    if not one:
        return step()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return step()
    finally:
        torch.set_num_threads(threads)


#: Devices with PyTorch's fused AdamW kernel.
FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu")


def layer_depth(model: nn.Module) -> Callable[[str], tuple[int, int]]:
    """``name -> (layer, layers)`` for ``model``'s parameters: trunk block ``k`` of its
    (first) backbone is layer ``k`` (1..K), everything else (head, new head layers) ``K + 1``;
    a model without a backbone is one layer."""
    found = next(((p, m) for p, m in model.named_modules() if isinstance(m, Backbone)), None)
    if found is None:
        return lambda name: (1, 1)
    prefix, backbone = found
    blocks = trunk_names(backbone)
    total = len(blocks) + 1

    def depth(name: str) -> tuple[int, int]:
        if prefix and not name.startswith(prefix + "."):
            return total, total
        index = block_of(name[len(prefix) + 1 :] if prefix else name, blocks)
        return (total if index is None else index + 1), total

    return depth


def layer_decay_groups(
    groups: list[dict[str, object]], depth: Callable[[str], tuple[int, int]], cfg: TrainConfig
) -> list[dict[str, object]]:
    """Split each group by layer, with ``lr = learning_rate * decay ** (layers - layer)``."""
    assert cfg.layer_lr_decay is not None
    out: list[dict[str, object]] = []
    for group in groups:
        by_layer: dict[int, tuple[list[nn.Parameter], list[str]]] = {}
        layers = 1
        for param, name in zip(group["params"], group["names"], strict=True):  # type: ignore[call-overload]
            layer, layers = depth(name)
            params, names = by_layer.setdefault(layer, ([], []))
            params.append(param)
            names.append(name)
        for layer in sorted(by_layer):
            params, names = by_layer[layer]
            lr = cfg.learning_rate * cfg.layer_lr_decay ** (layers - layer)
            out.append({**group, "params": params, "names": names, "lr": lr, "layer": layer})
    return out


def build_optimizer(
    named_parameters: NamedParameters,
    cfg: TrainConfig,
    depth: Callable[[str], tuple[int, int]] | None = None,
) -> torch.optim.Optimizer:
    """AdamW (``cfg.learning_rate``, ``cfg.weight_decay``) over the trainable named parameters
    (an :class:`EagerAdamW`).

    PyTorch's fused AdamW kernel where every parameter allows it (floating point, on a
    device in :data:`FUSED_DEVICES`): the same update rule, one kernel per step instead of
    about eight ops per parameter tensor. For the paper's ALIGNN (190 tensors) on 2 CPU
    threads a step takes ~21 ms fused vs ~88 ms with the default per-tensor loop.
    """
    if cfg.optimizer != "adamw":
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
    groups = decay_groups(named_parameters, cfg.weight_decay)
    if cfg.layer_lr_decay is not None:  # layer-wise rates (off: the groups as before)
        groups = layer_decay_groups(groups, depth or (lambda name: (1, 1)), cfg)
    params = [p for group in groups for p in group["params"]]  # type: ignore[union-attr]
    fused = all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)
    return EagerAdamW(groups, lr=cfg.learning_rate, fused=fused or None)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """One-cycle schedule over ``cfg.epochs * steps_per_epoch`` batches, or ``None``.

    Call ``scheduler.step()`` after every ``optimizer.step()``.
    """
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler != "onecycle":
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=(
            [group["lr"] for group in optimizer.param_groups]
            if cfg.layer_lr_decay is not None
            else cfg.learning_rate
        ),
        total_steps=cfg.epochs * steps_per_epoch,
        pct_start=cfg.pct_start,
    )
