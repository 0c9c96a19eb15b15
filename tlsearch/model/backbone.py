"""The backbone interface: what a model family provides so that training and transfer use it.

A property model is ``structures -> inputs -> batch -> features -> head``::

    store = Family.input_store(records, settings, cache_dir)   cached inputs of the structures
    batch = store.collate(indices)                             the family's batch
    h = model.features(batch)                                  (B, feature_width) pooled
    y = model.head(h)                                          (B, output_features)

and ``model(batch) == model.head(model.features(batch))``. Everything above the backbone (the
transfer-learning heads of :mod:`tlsearch.model.heads`, FT strategies, frozen-trunk feature
caching, source ranking, ``model.pt``) is written against this interface, so a new pretrained
family is one module implementing :class:`Backbone` plus one line in
:data:`tlsearch.model.registry.FAMILIES`. ALIGNN (:class:`tlsearch.model.alignn.ALIGNN`) is the
first implementation.

The trunk is everything before the head: :meth:`Backbone.trunk_blocks` names its blocks in
data-flow order (for ALIGNN the paper's layers 1-6), so "freeze the first k blocks" or "train
only the head" (every parameter outside the trunk blocks) are expressed without knowing the
family. A block holds modules, not single tensors: a parameter belongs to the block whose name
is a dotted prefix of the parameter's name.

A family describes itself: :meth:`Backbone.describe` returns its constructor arguments as
JSON-safe data (``config``) with ``kind`` = the family name, and
:meth:`Backbone.from_description` rebuilds a freshly initialised module from it (matgl's
``save_args``), so a ``model.pt`` rebuilds itself through the registry.
:meth:`Backbone.from_pretrained` reads the family's own checkpoints.

Other families (:mod:`tlsearch.model.families`: CHGNet, SevenNet) are fine-tuned, scored and
predicted through the same paths: :func:`tlsearch.training.data.prepare_data` takes the
family's :meth:`Backbone.input_store`, and a family lists the parameter-less module types of
its trunk that do not depend on training mode (``stateless_modules``) so the frozen trunk's
features are cached for it too. Still ALIGNN-only: a run's ``model`` settings are
:class:`~tlsearch.model.config.ALIGNNConfig` (training from scratch and pre-training build an
ALIGNN; a foundation model's run keeps them unused); multi-property pre-training
(:mod:`tlsearch.model.multi_property`) builds an ALIGNN trunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor, nn

if TYPE_CHECKING:
    from typing import Self

    from tlsearch.graphs.settings import GraphSettings
    from tlsearch.structures.records import StructureRecord


class InputStore(Protocol):
    """A family's inputs for a dataset (ALIGNN: :class:`tlsearch.graphs.store.GraphStore`).

    Attributes:
        ids: the accepted structures' ids, in input order (row ``i`` of every batch source).
        rejected: the structures no input could be built for (id and reason).
    """

    ids: list[str]
    rejected: list[Any]

    def __len__(self) -> int: ...

    def collate(self, indices: Sequence[int]) -> Any:
        """The batch of the structures at ``indices`` (what :meth:`Backbone.features` reads)."""
        ...

    def num_atoms(self) -> Any:
        """Atoms per accepted structure (an integer array), for batch sizing and throughput."""
        ...


@runtime_checkable
class Backbone(Protocol):
    """A model family: an ``nn.Module`` with a trunk (features) and a prediction head.

    Attributes:
        family: the registry name (``alignn``); also ``describe()["kind"]``.
        family_version: the version of the family's architecture code; a saved description of
            another version loads with a warning (:func:`tlsearch.model.registry.from_description`).
    """

    family: ClassVar[str]
    family_version: ClassVar[str]

    @property
    def feature_width(self) -> int:
        """Width of :meth:`features` (the input width of the head)."""
        ...

    @property
    def output_features(self) -> int:
        """Width of :meth:`head`'s output (the number of predicted properties)."""
        ...

    def features(self, batch: Any) -> Tensor:
        """Pooled per-structure features (B, feature_width): everything before the head."""
        ...

    def layer_features(self, batch: Any) -> list[Tensor]:
        """Pooled features after each block that has them, in order, each (B, width); the
        last equals :meth:`features`."""
        ...

    def head(self, h: Tensor) -> Tensor:
        """The prediction head: (B, feature_width) -> (B, output_features)."""
        ...

    def replace_head(self, output_features: int) -> nn.Module:
        """Install a freshly initialised head of ``output_features`` outputs; returns it."""
        ...

    def trunk_blocks(self) -> list[tuple[str, nn.Module]]:
        """The trunk's blocks in data-flow order: (submodule name, module)."""
        ...

    def describe(self) -> dict[str, Any]:
        """``{"kind": family, "version": family_version, "config": {constructor arguments}}``,
        JSON-safe; the width of the
        head's output is ``config["output_features"]`` when the constructor takes it (the
        frozen-trunk cache key hashes ``config`` without it)."""
        ...

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> Self:
        """A freshly initialised module of the described architecture (load weights next)."""
        ...

    @classmethod
    def from_pretrained(cls, source: Any) -> Self:
        """The model of one of the family's own checkpoints (a path or its loaded content),
        weights loaded, in eval mode."""
        ...

    @classmethod
    def input_store(
        cls,
        records: Sequence[StructureRecord],
        settings: GraphSettings,
        cache_dir: Path | None = None,
        progress: bool = False,
    ) -> InputStore:
        """The family's inputs for ``records``, cached under ``cache_dir`` (None: in memory)."""
        ...


def block_of(name: str, blocks: Sequence[str]) -> int | None:
    """Index of the block (by name) holding the parameter/module ``name``; None: outside the
    trunk (the head, new head layers)."""
    for index, block in enumerate(blocks):
        if name == block or name.startswith(block + "."):
            return index
    return None


def trunk_names(backbone: Backbone) -> list[str]:
    """The names of ``backbone``'s trunk blocks, in order."""
    return [name for name, _ in backbone.trunk_blocks()]


def trunk_parameters(backbone: Backbone) -> Iterator[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every trunk parameter (names relative to ``backbone``)."""
    blocks = trunk_names(backbone)
    for name, param in backbone.named_parameters():  # type: ignore[attr-defined]
        if block_of(name, blocks) is not None:
            yield name, param


def unwrap_trunk(model: nn.Module) -> Backbone:
    """The backbone whose :meth:`~Backbone.features` is ``model``'s trunk: the model itself,
    or its ``trunk`` (a model built on a backbone, e.g. new head layers).

    Raises:
        TypeError: when neither is a :class:`Backbone`.
    """
    if isinstance(model, Backbone):
        return model
    trunk = getattr(model, "trunk", None)
    if not isinstance(trunk, Backbone):
        raise TypeError(f"{type(model).__name__} has no backbone (no Backbone trunk)")
    return trunk
