"""The input store of the foundation families: records in, the family's own graphs memoised.

A family's graph depends on the model (its cutoffs), which a class-level
:meth:`~tlsearch.model.backbone.Backbone.input_store` does not know. So the store keeps the
structures, and a batch asks the store for each structure's input under a key the model
chooses (:meth:`StructureBatch.inputs`): the first request builds it with the model's
builder, later ones (every later epoch, every model with the same key) reuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tlsearch.graphs.settings import GraphSettings
from tlsearch.structures.records import Rejection, StructureRecord

Builder = Callable[[StructureRecord], Any]


class StructureStore:
    """Structures of a dataset, with per-family inputs memoised (the family's input store).

    Attributes:
        ids: the structures' ids, in input order.
        positions: index of each stored structure in the records given (all of them).
        rejected: always empty (a structure no graph can be built for fails when first used).
        path: None (inputs live in memory only); ``cache_hit`` is always False.
        settings: the graph settings the run gave (part of the frozen-trunk cache key; the
            families' own graphs are set by their models).
    """

    def __init__(self, records: Sequence[StructureRecord], settings: GraphSettings) -> None:
        self.records = list(records)
        self.ids = [record.id for record in self.records]
        self.positions = list(range(len(self.records)))  # every record is accepted
        self.rejected: list[Rejection] = []
        self.path = None
        self.cache_hit = False  # nothing is read from disk
        self.settings = settings
        self._memo: dict[tuple[str, int], Any] = {}

    def __len__(self) -> int:
        return len(self.records)

    def num_atoms(self) -> np.ndarray:
        """Atoms per structure."""
        return np.array([record.num_atoms for record in self.records], dtype=np.int64)

    def collate(self, indices: Sequence[int]) -> StructureBatch:
        """The batch of the structures at ``indices`` (inputs built when a model reads them)."""
        idx = [int(i) for i in indices]
        return StructureBatch(
            store=self, indices=idx, num_graphs=len(idx),
            num_nodes=sum(self.records[i].num_atoms for i in idx),
            ids=[self.ids[i] for i in idx],
        )  # fmt: skip

    def inputs(self, key: str, indices: Sequence[int], build: Builder) -> list[Any]:
        """The inputs of ``indices`` under ``key``, built with ``build`` on first request."""
        out = []
        for i in indices:
            value = self._memo.get((key, i))
            if value is None:
                value = self._memo[(key, i)] = build(self.records[i])
            out.append(value)
        return out


@dataclass
class StructureBatch:
    """A batch of a :class:`StructureStore`, with what the training loop reads of a batch
    (``num_graphs``, ``num_nodes``, ``targets``, ``target_mask``, ``ids``, ``to``)."""

    store: StructureStore
    indices: list[int]
    num_graphs: int
    num_nodes: int = 0
    targets: Tensor | None = None
    target_mask: Tensor | None = None
    ids: list[str] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> StructureBatch:
        """Targets on ``device``; the model moves its inputs there (``self.device``)."""
        kwargs = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                value = value.to(device, non_blocking=non_blocking)
            kwargs[f.name] = value
        kwargs["device"] = torch.device(device)
        return StructureBatch(**kwargs)

    def inputs(self, key: str, build: Builder) -> list[Any]:
        """Each structure's input under ``key`` (memoised in the store; on the CPU)."""
        return self.store.inputs(key, self.indices, build)


class LinearHeadBackbone(nn.Module):
    """What the foundation families share: a linear head ``fc`` on the pooled features
    (``features(batch)``, which each family defines) and the structures as their input store."""

    fc: nn.Linear

    def features(self, batch: StructureBatch) -> Tensor:
        raise NotImplementedError

    @property
    def feature_width(self) -> int:
        """Width of the pooled features (the head's input)."""
        return self.fc.in_features

    @property
    def output_features(self) -> int:
        return self.fc.out_features

    def head(self, h: Tensor) -> Tensor:
        return self.fc(h)

    def forward(self, batch: StructureBatch) -> Tensor:
        return self.head(self.features(batch))

    def replace_head(self, output_features: int) -> nn.Module:
        self.fc = nn.Linear(self.feature_width, output_features)
        return self.fc

    @classmethod
    def input_store(
        cls,
        records: Sequence[StructureRecord],
        settings: GraphSettings,
        cache_dir: Any = None,
        progress: bool = False,
    ) -> StructureStore:
        """The structures; each one's family graph is built on first use (in memory)."""
        return StructureStore(records, settings)
