"""A (pre-trained) backbone with extra MLP layers between its pooled features and its head.

The paper's strategy 2 (Sec. 2.4) adds one MLP layer before the prediction head; fine-tuning
from a multi-property model (Sec. 2.6) adds two. :class:`HeadedBackbone` covers both, for any
:class:`~tlsearch.model.backbone.Backbone`::

    h = trunk.features(batch)         (B, width)    ALIGNN: layers 1-6 of the paper's Fig. 1a
    h = new_layers(h)                 (B, width)    k x MLPLayer(width, width)
    y = trunk.head(h)                 (B, out)      ALIGNN: layer 7, ``fc``

The new layers are ALIGNN's own ``MLPLayer`` (Linear + BatchNorm + SiLU) and the PT head is
kept; the paper's scripts instead replace ``fc`` by a fresh ``Linear(256, 64)`` followed by
``Linear(64, 1)`` (no activation), a different head for strategy 2 and the "frozen layers"
study.

``state_dict`` keys are ``trunk.<backbone key>`` and ``new_layers.<i>.layer.<j>.*``, and
:meth:`HeadedBackbone.describe` records everything needed to rebuild the module before loading
such a ``state_dict`` (:meth:`HeadedBackbone.from_description`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from tlsearch.model.backbone import Backbone
from tlsearch.model.layers import MLPLayer
from tlsearch.model.registry import from_description as model_from_description

#: ``describe()["kind"]`` of a :class:`HeadedBackbone`.
HEADED_KIND = "headed"
#: The kind written before the backbone interface: an ALIGNN trunk given by ``base_config``.
LEGACY_KIND = "headed_alignn"


def mlp_stack(width: int, depth: int) -> nn.Sequential:
    """``depth`` x :class:`MLPLayer` (width -> width): Linear + BatchNorm1d + SiLU each."""
    if depth < 0:
        raise ValueError(f"number of MLP layers must be >= 0, got {depth}")
    return nn.Sequential(*(MLPLayer(width, width) for _ in range(depth)))


class HeadedBackbone(nn.Module):
    """A backbone + ``n_new_layers`` new MLP layers before the backbone's own head.

    Attributes:
        trunk: the wrapped :class:`Backbone` (weights shared, not copied); its ``head`` is the
            prediction head.
        new_layers: ``nn.Sequential`` of ``n_new_layers`` x ``MLPLayer(width, width)``
            (empty when ``n_new_layers == 0``, so the model equals the trunk).
        n_new_layers: the number of inserted layers.
    """

    def __init__(self, trunk: Backbone, n_new_layers: int = 1) -> None:
        super().__init__()
        if not isinstance(trunk, nn.Module) or not isinstance(trunk, Backbone):
            raise TypeError(f"trunk must be a Backbone module, got {type(trunk).__name__}")
        self.trunk = trunk
        self.n_new_layers = n_new_layers
        self.new_layers = mlp_stack(trunk.feature_width, n_new_layers)

    def features(self, batch: Any) -> Tensor:
        """Pooled features (B, width) of the trunk (ALIGNN: paper layers 1-6)."""
        return self.trunk.features(batch)

    def head(self, h: Tensor) -> Tensor:
        """New MLP layers, then the trunk's prediction head: (B, width) -> (B, out)."""
        return self.trunk.head(self.new_layers(h))

    def forward(self, batch: Any) -> Tensor:
        """Predictions (B, output_features)."""
        return self.head(self.features(batch))

    def describe(self) -> dict[str, Any]:
        """JSON-safe constructor arguments: ``kind``, ``backbone`` (its description),
        ``n_new_layers``."""
        return {
            "kind": HEADED_KIND,
            "backbone": self.trunk.describe(),
            "n_new_layers": self.n_new_layers,
        }

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> HeadedBackbone:
        """A freshly initialised model with the architecture of :meth:`describe`'s output.

        Also reads the ``headed_alignn`` descriptions written before the backbone interface
        (``base_config``: the ALIGNN trunk's config). Load the saved ``state_dict`` next.

        Raises:
            ValueError: when ``description`` is not a :class:`HeadedBackbone` description.
        """
        kind = description.get("kind")
        if kind not in (HEADED_KIND, LEGACY_KIND):
            raise ValueError(f"model description has kind={kind!r}, expected {HEADED_KIND!r}")
        trunk_key = "backbone" if kind == HEADED_KIND else "base_config"
        missing = [key for key in (trunk_key, "n_new_layers") if key not in description]
        if missing:
            raise ValueError(f"model description lacks {', '.join(missing)}")
        backbone = description[trunk_key]
        if kind == LEGACY_KIND:
            backbone = {"kind": "alignn", "config": backbone}
        trunk = model_from_description(backbone)
        return cls(trunk, n_new_layers=int(description["n_new_layers"]))  # type: ignore[arg-type]
