"""An exponential moving average (EMA) of a model's trainable weights (``train.ema_decay``).

After every optimiser step the average moves towards the weights:
``avg <- decay * avg + (1 - decay) * w`` for each trainable parameter (buffers, e.g. batch-norm
statistics, are the model's own). Validation, the best-epoch choice, the weights kept and
``model.pt`` use the average; training continues from the raw weights. Off (``None``, the
default) nothing here runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class WeightAverage:
    """The EMA of ``model``'s parameters with ``requires_grad`` (started at their values).

    Args:
        model: the trained module (parameters are tracked by name).
        decay: the weight of the old average per step, in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self._params = [params[n] for n in self.names]
        self.average = [p.detach().clone() for p in self._params]

    @torch.no_grad()
    def update(self) -> None:
        """One step: move the average towards the current weights."""
        torch._foreach_lerp_(self.average, [p.detach() for p in self._params], 1.0 - self.decay)

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """The model holds the average inside the block, its raw weights again after it."""
        raw = [p.detach().clone() for p in self._params]
        self.copy_to_model()
        try:
            yield
        finally:
            for param, value in zip(self._params, raw, strict=True):
                param.copy_(value)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Write the average into the model's parameters (for good)."""
        for param, value in zip(self._params, self.average, strict=True):
            param.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The average by parameter name (for mid-training checkpoints)."""
        return {n: t.clone() for n, t in zip(self.names, self.average, strict=True)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in zip(self.names, self.average, strict=True):
            value.copy_(state[name])
