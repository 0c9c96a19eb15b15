"""A backbone with a closed-form head: ridge or RBF kernel ridge on standardised features.

:class:`ClosedFormModel` is ``head(trunk.features(batch))`` where the head
(:class:`ClosedFormHead`) is what a ridge / kernel-ridge fit returned
(:mod:`tlsearch.transfer.closed_form`), written as tensors so a ``model.pt`` holds it and
``tlsearch predict`` runs it like any model::

    z = (h - mean) / scale
    ridge: y = z @ weight.T + bias
    krr:   y = exp(-gamma * |z - support_i|^2) @ dual_coef      (support: the fitted rows)

The trunk is frozen (eval mode, no gradient); the model describes itself (``kind``
``closed_form``) with the trunk's description and the head's shapes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tlsearch.model.backbone import Backbone
from tlsearch.model.registry import from_description

#: ``describe()["kind"]`` of a :class:`ClosedFormModel`.
KIND = "closed_form"


class ClosedFormHead(nn.Module):
    """The fitted head as tensors (zeros until loaded or set).

    Args:
        kind: ``ridge`` or ``krr``.
        width: feature width; outputs: predicted properties; support: fitted rows (``krr``).
        gamma: the RBF width (``krr``).
    """

    def __init__(self, kind: str, width: int, outputs: int, support: int = 0,
                 gamma: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        if kind not in ("ridge", "krr"):
            raise ValueError(f"unknown closed-form head {kind!r} (krr or ridge)")
        self.kind, self.gamma = kind, float(gamma)
        self.register_buffer("mean", torch.zeros(width, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(width, dtype=torch.float64))
        if kind == "ridge":
            self.register_buffer("weight", torch.zeros(outputs, width, dtype=torch.float64))
            self.register_buffer("bias", torch.zeros(outputs, dtype=torch.float64))
        else:
            self.register_buffer("support", torch.zeros(support, width, dtype=torch.float64))
            self.register_buffer("dual_coef", torch.zeros(support, outputs, dtype=torch.float64))

    def forward(self, h: Tensor) -> Tensor:
        z = (h.double() - self.mean) / self.scale
        if self.kind == "ridge":
            out = z @ self.weight.T + self.bias
        else:
            out = torch.exp(-self.gamma * torch.cdist(z, self.support).square()) @ self.dual_coef
        return out.to(h.dtype)

    def shape_args(self) -> dict[str, Any]:
        """The constructor arguments (for :meth:`ClosedFormModel.describe`)."""
        width = int(self.mean.shape[0])
        if self.kind == "ridge":
            return {"kind": "ridge", "width": width, "outputs": int(self.weight.shape[0])}
        support, outputs = (int(n) for n in self.dual_coef.shape)
        return {"kind": "krr", "width": width, "outputs": outputs, "support": support,
                "gamma": self.gamma}  # fmt: skip


class ClosedFormModel(nn.Module):
    """A frozen backbone and a :class:`ClosedFormHead` on its pooled features (``layers``:
    every layer's pooled features, concatenated: :meth:`Backbone.layer_features`)."""

    def __init__(self, trunk: Backbone, head: ClosedFormHead, layers: bool = False) -> None:
        super().__init__()
        self.layers = layers
        if not isinstance(trunk, nn.Module) or not isinstance(trunk, Backbone):
            raise TypeError(f"trunk must be a Backbone module, got {type(trunk).__name__}")
        self.trunk = trunk
        self.closed_head = head
        for param in self.trunk.parameters():
            param.requires_grad_(False)

    def head(self, h: Tensor) -> Tensor:
        return self.closed_head(h)

    def forward(self, batch: Any) -> Tensor:
        if self.layers:
            return self.head(torch.cat(self.trunk.layer_features(batch), dim=1))
        return self.head(self.trunk.features(batch))

    def describe(self) -> dict[str, Any]:
        return {"kind": KIND, "trunk": self.trunk.describe(),
                "head": self.closed_head.shape_args(), "layers": self.layers}  # fmt: skip

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> ClosedFormModel:
        if description.get("kind") != KIND:
            raise ValueError(f"not a closed-form model description: {sorted(description)}")
        trunk = from_description(description["trunk"])
        head = ClosedFormHead(**description["head"])
        return cls(trunk, head, bool(description.get("layers", False)))  # type: ignore[arg-type]
