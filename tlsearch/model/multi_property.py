"""Multi-property pre-training (MPT) model and its conversion for fine-tuning (paper Sec. 2.6).

"During PT, the embedding obtained from the graph convolutions of ALIGNN (i.e., after layer 6)
is passed to fully connected individual MLPs dedicated to each of the six PT properties
considered. After PT, the MTP model is FT by adding two extra layers of MLP to the PT model,
before the prediction head, and re-training the entire configuration on the desired target
property."

:class:`MultiPropertyALIGNN`::

    h = trunk.embed(batch)                           (B, hidden)   layers 1-6
    y[:, i] = heads[p_i](h)                          (B, 1) each   one MLP per property
    heads[p] = head_layers x MLPLayer(hidden, hidden), then Linear(hidden, 1)

The trunk is an :class:`ALIGNN` whose ``fc`` is replaced by ``nn.Identity`` (the property
heads take its place), so the model carries no unused single-property head.
(The paper's scripts use per-property heads SiLU -> Linear(hidden, 128) -> SiLU ->
[Linear(128, 128) -> SiLU] x (n_hidden - 1) -> Linear(128, 1), without BatchNorm, and the same
head shape with ``n_hidden=2`` for FT; here the heads use ALIGNN's ``MLPLayer`` at full width.)
Train it with :func:`tlsearch.training.losses.masked_l1` on ``GraphBatch.targets`` /
``target_mask``. :func:`to_finetune` turns it into the FT model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import EXECUTION_FIELDS, ALIGNNConfig
from tlsearch.model.heads import HeadedBackbone
from tlsearch.model.layers import MLPLayer

if TYPE_CHECKING:
    from tlsearch.graphs.batch import GraphBatch

#: ``describe()["kind"]`` of a :class:`MultiPropertyALIGNN`.
MPT_KIND = "multi_property_alignn"
#: New MLP layers added before the new prediction head when fine-tuning an MPT model.
FT_NEW_LAYERS = 2


def _check_properties(properties: Sequence[str]) -> list[str]:
    names = list(properties)
    if not names:
        raise ValueError("a multi-property model needs at least one property")
    for name in names:
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"property name {name!r} must be a non-empty string without '.'")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate property names: {duplicates}")
    return names


def property_head(hidden: int, head_layers: int) -> nn.Sequential:
    """``head_layers`` x ``MLPLayer(hidden, hidden)`` then ``Linear(hidden, 1)``."""
    if head_layers < 0:
        raise ValueError(f"head_layers must be >= 0, got {head_layers}")
    layers: list[nn.Module] = [MLPLayer(hidden, hidden) for _ in range(head_layers)]
    return nn.Sequential(*layers, nn.Linear(hidden, 1))


class MultiPropertyALIGNN(nn.Module):
    """ALIGNN trunk with one MLP head per property; ``forward`` gives (B, P).

    Attributes:
        config: the trunk's architecture (its ``output_features`` is not used).
        properties: property names, in output-column order.
        head_layers: MLP layers in every property head before its final linear layer.
        trunk: the :class:`ALIGNN` (``fc`` replaced by ``nn.Identity``).
        heads: ``nn.ModuleDict`` property -> head; keys ``heads.<property>.<i>.*``.
    """

    def __init__(
        self, config: ALIGNNConfig, properties: Sequence[str], head_layers: int = 1
    ) -> None:
        super().__init__()
        self.config = config
        self.properties = _check_properties(properties)
        self.head_layers = head_layers
        self.trunk = ALIGNN(config)
        self.trunk.fc = nn.Identity()
        hidden = config.hidden_features
        self.heads = nn.ModuleDict()
        for name in self.properties:
            try:
                self.heads[name] = property_head(hidden, head_layers)
            except KeyError as exc:  # e.g. a name that is an nn.Module attribute
                raise ValueError(f"property name {name!r} cannot name a head: {exc}") from exc

    def embed(self, batch: GraphBatch) -> Tensor:
        """Pooled graph features (B, hidden) shared by all heads (paper layers 1-6)."""
        return self.trunk.embed(batch)

    def forward(self, batch: GraphBatch) -> Tensor:
        """Predictions (B, P), column ``i`` for ``properties[i]``."""
        h = self.embed(batch)
        return torch.cat([self.heads[name](h) for name in self.properties], dim=1)

    def describe(self) -> dict[str, Any]:
        """JSON-safe constructor arguments: ``kind``, ``base_config``, ``properties``..."""
        return {
            "kind": MPT_KIND,
            "base_config": self.config.model_dump(mode="json", exclude=EXECUTION_FIELDS),
            "properties": list(self.properties),
            "head_layers": self.head_layers,
        }

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> MultiPropertyALIGNN:
        """A freshly initialised model with the architecture of :meth:`describe`'s output."""
        kind = description.get("kind")
        if kind != MPT_KIND:
            raise ValueError(f"model description has kind={kind!r}, expected {MPT_KIND!r}")
        missing = [k for k in ("base_config", "properties", "head_layers") if k not in description]
        if missing:
            raise ValueError(f"model description lacks {', '.join(missing)}")
        config = ALIGNNConfig.model_validate(description["base_config"])
        return cls(config, description["properties"], int(description["head_layers"]))


def to_finetune(
    mpt_model: MultiPropertyALIGNN,
    output_features: int = 1,
    n_new_layers: int = FT_NEW_LAYERS,
) -> HeadedBackbone:
    """The FT model of Sec. 2.6: MPT trunk + two new MLP layers + a new prediction head.

    The trunk's weights (layers 1-6, BatchNorm statistics included) are copied from
    ``mpt_model`` (which is not modified); the new MLP layers and the new head ``fc``
    (``Linear(hidden, output_features)``) are freshly initialised and the property heads are
    dropped. Every parameter is trainable ("re-training the entire configuration").
    """
    if not isinstance(mpt_model, MultiPropertyALIGNN):
        raise TypeError(f"expected a MultiPropertyALIGNN, got {type(mpt_model).__name__}")
    config = mpt_model.config.model_copy(update={"output_features": output_features})
    trunk = ALIGNN(config)
    result = trunk.load_state_dict(mpt_model.trunk.state_dict(), strict=False)
    if result.unexpected_keys or set(result.missing_keys) != {"fc.weight", "fc.bias"}:
        raise RuntimeError(
            f"MPT trunk does not fit ALIGNN({config}): missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}"
        )
    model = HeadedBackbone(trunk, n_new_layers=n_new_layers)
    for param in model.parameters():
        param.requires_grad_(True)
    return model
