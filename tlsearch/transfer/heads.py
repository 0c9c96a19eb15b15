"""A (pre-trained) ALIGNN with extra MLP layers between pooling and the prediction head.

The paper's strategy 2 (Sec. 2.4) adds one MLP layer before the prediction head; fine-tuning
from a multi-property model (Sec. 2.6) adds two. :class:`HeadedALIGNN` covers both::

    h = trunk.embed(batch)            (B, hidden)   layers 1-6 of the paper's Fig. 1a
    h = new_layers(h)                 (B, hidden)   k x MLPLayer(hidden, hidden)
    y = trunk.fc(h)                   (B, out)      layer 7, the prediction head

The new layers are ALIGNN's own ``MLPLayer`` (Linear + BatchNorm + SiLU) and the PT head is
kept; the paper's scripts instead replace ``fc`` by a fresh ``Linear(256, 64)`` followed by
``Linear(64, 1)`` (no activation), a different head for strategy 2 and the "frozen layers"
study.

``state_dict`` keys are ``trunk.<alignn key>`` and ``new_layers.<i>.layer.<j>.*``, and
:meth:`HeadedALIGNN.describe` records everything needed to rebuild the module before loading
such a ``state_dict`` (:meth:`HeadedALIGNN.from_description`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import ALIGNNConfig
from tlsearch.model.layers import MLPLayer

if TYPE_CHECKING:
    from tlsearch.graphs.batch import GraphBatch

#: ``describe()["kind"]`` of a :class:`HeadedALIGNN`.
HEADED_KIND = "headed_alignn"


def mlp_stack(width: int, depth: int) -> nn.Sequential:
    """``depth`` x :class:`MLPLayer` (width -> width): Linear + BatchNorm1d + SiLU each."""
    if depth < 0:
        raise ValueError(f"number of MLP layers must be >= 0, got {depth}")
    return nn.Sequential(*(MLPLayer(width, width) for _ in range(depth)))


class HeadedALIGNN(nn.Module):
    """ALIGNN trunk + ``n_new_layers`` new MLP layers before the trunk's own ``fc`` head.

    Attributes:
        trunk: the wrapped :class:`ALIGNN` (weights shared, not copied); its ``fc`` is the
            prediction head.
        new_layers: ``nn.Sequential`` of ``n_new_layers`` x ``MLPLayer(hidden, hidden)``
            (empty when ``n_new_layers == 0``, so the model equals the trunk).
        n_new_layers: the number of inserted layers.
    """

    def __init__(self, trunk: ALIGNN, n_new_layers: int = 1) -> None:
        super().__init__()
        if not isinstance(trunk, ALIGNN):
            raise TypeError(f"trunk must be an ALIGNN, got {type(trunk).__name__}")
        self.trunk = trunk
        self.n_new_layers = n_new_layers
        self.new_layers = mlp_stack(trunk.config.hidden_features, n_new_layers)

    @property
    def config(self) -> ALIGNNConfig:
        """The trunk's architecture (``output_features`` = width of the prediction head)."""
        return self.trunk.config

    def embed(self, batch: GraphBatch) -> Tensor:
        """Pooled graph features (B, hidden) of the trunk (paper layers 1-6)."""
        return self.trunk.embed(batch)

    def head(self, h: Tensor) -> Tensor:
        """New MLP layers, then the trunk's prediction head: (B, hidden) -> (B, out)."""
        return self.trunk.fc(self.new_layers(h))

    def forward(self, batch: GraphBatch) -> Tensor:
        """Predictions (B, output_features)."""
        return self.head(self.embed(batch))

    def describe(self) -> dict[str, Any]:
        """JSON-safe constructor arguments: ``kind``, ``base_config``, ``n_new_layers``."""
        return {
            "kind": HEADED_KIND,
            "base_config": self.config.model_dump(mode="json"),
            "n_new_layers": self.n_new_layers,
        }

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> HeadedALIGNN:
        """A freshly initialised model with the architecture of :meth:`describe`'s output.

        Load the saved ``state_dict`` into it afterwards.

        Raises:
            ValueError: when ``description`` is not a :class:`HeadedALIGNN` description.
        """
        kind = description.get("kind")
        if kind != HEADED_KIND:
            raise ValueError(f"model description has kind={kind!r}, expected {HEADED_KIND!r}")
        missing = [key for key in ("base_config", "n_new_layers") if key not in description]
        if missing:
            raise ValueError(f"model description lacks {', '.join(missing)}")
        config = ALIGNNConfig.model_validate(description["base_config"])
        return cls(ALIGNN(config), n_new_layers=int(description["n_new_layers"]))
