"""ALIGNN (Choudhary & DeCost, npj Comput. Mater. 2021) on :class:`GraphBatch` tensors.

The paper's model (Table S1): atom/bond/angle embeddings, 4 ALIGNN layers, 4 edge-gated
graph convolutions on the bond graph, average pooling and a linear head. Submodule names
equal those of ``alignn.models.alignn.ALIGNN``, so ``state_dict()`` keys and shapes match a
checkpoint trained by alignn with the same :class:`ALIGNNConfig` (see
:mod:`tlsearch.model.interop`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from tlsearch.graphs.store import build_graph_store
from tlsearch.model.config import EXECUTION_FIELDS, ALIGNNConfig, Kernel
from tlsearch.model.interop import infer_config, load_alignn_state_dict, read_alignn_state_dict
from tlsearch.model.kernels.choice import check_kernel
from tlsearch.model.kernels.edge_gated import EdgeIndex
from tlsearch.model.layers import ALIGNNConv, EdgeGatedGraphConv, MLPLayer, RBFExpansion
from tlsearch.model.pooling import AvgPooling

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from tlsearch.graphs.batch import GraphBatch
    from tlsearch.graphs.settings import GraphSettings
    from tlsearch.graphs.store import GraphStore
    from tlsearch.structures.records import StructureRecord

#: Bond lengths are expanded on [0, 8] Angstrom, angle cosines on [-1, 1] (as alignn).
BOND_RANGE = (0.0, 8.0)
COSINE_RANGE = (-1.0, 1.0)


def _rbf_embedding(
    vmin: float, vmax: float, bins: int, embedding: int, hidden: int, kernel: Kernel
) -> nn.Module:
    """RBF expansion followed by two MLP layers: (M,) -> (M, hidden)."""
    return nn.Sequential(
        RBFExpansion(vmin=vmin, vmax=vmax, bins=bins),
        MLPLayer(bins, embedding, kernel=kernel),
        MLPLayer(embedding, hidden, kernel=kernel),
    )


class ALIGNN(nn.Module):
    """Atomistic line graph neural network.

    Data flow (N atoms, E bonds, T bond pairs, B graphs, H = hidden_features)::

        x (N, 92) -atom_embedding-> (N, H)       y = |r| (E,) -edge_embedding-> (E, H)
        z = cos (T,) -angle_embedding-> (T, H)
        alignn_layers: (x, y, z) -> (x, y, z)    gcn_layers: (x, y) -> (x, y)
        readout: mean of x per graph -> h (B, H)   fc: h -> (B, output_features)

    :meth:`embed` returns ``h``; :meth:`forward` is ``head(embed(batch))`` and
    :meth:`head` is just ``fc``, so a subclass (e.g. a transfer-learning model that inserts
    an MLP before ``fc``) only overrides :meth:`head`.

    ``config.kernel`` goes to every layer (:mod:`tlsearch.model.kernels.choice`: by default the
    fused CPU kernels on a CPU, the reference equations elsewhere); :func:`set_kernel` changes
    it on a built model.
    """

    def __init__(self, config: ALIGNNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else ALIGNNConfig()
        hidden, kernel = config.hidden_features, config.kernel
        self.atom_embedding = MLPLayer(config.atom_input_features, hidden, kernel=kernel)
        self.edge_embedding = _rbf_embedding(
            *BOND_RANGE, config.edge_input_features, config.embedding_features, hidden, kernel
        )
        self.angle_embedding = _rbf_embedding(
            *COSINE_RANGE, config.triplet_input_features, config.embedding_features, hidden,
            kernel,
        )  # fmt: skip
        self.alignn_layers = nn.ModuleList(
            ALIGNNConv(hidden, hidden, kernel=kernel) for _ in range(config.alignn_layers)
        )
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(hidden, hidden, kernel=kernel) for _ in range(config.gcn_layers)
        )
        self.readout = AvgPooling()
        self.fc = nn.Linear(hidden, config.output_features)

    def embed(self, batch: GraphBatch) -> Tensor:
        """Pooled graph features (B, hidden_features): everything before the head."""
        # index structures shared by every convolution on the same graph, built once
        edge_index, lg_index = EdgeIndex(batch.edge_index), EdgeIndex(batch.lg_index)
        x = self.atom_embedding(batch.atom_features)
        y = self.edge_embedding(torch.linalg.vector_norm(batch.edge_vectors, dim=1))
        if len(self.alignn_layers) > 0:
            z = self.angle_embedding(batch.angle_cosines)
            last = len(self.alignn_layers) - 1
            for k, layer in enumerate(self.alignn_layers):
                # nothing reads the last layer's angle features: skip computing them
                x, y, z = layer(edge_index, lg_index, x, y, z, angles_out=k < last)
        last = len(self.gcn_layers) - 1
        for k, layer in enumerate(self.gcn_layers):
            x, y = layer(edge_index, x, y, edges_out=k < last)
        return self.readout(x, batch.node_graph, batch.num_graphs)

    def head(self, h: Tensor) -> Tensor:
        """Map pooled features (B, hidden_features) to predictions (B, output_features)."""
        return self.fc(h)

    def forward(self, batch: GraphBatch) -> Tensor:
        """Predictions (B, output_features); unlike alignn, never squeezed."""
        return self.head(self.embed(batch))

    # --- the backbone interface (tlsearch.model.backbone) -------------------------------------

    #: Registry name (:data:`tlsearch.model.registry.FAMILIES`) and ``describe()["kind"]``.
    family: ClassVar[str] = "alignn"
    #: Bump when the module tree or what it computes changes (alignn-compatible keys: 2023).
    family_version: ClassVar[str] = "alignn-2023"

    @property
    def feature_width(self) -> int:
        """Width of the pooled features: ``hidden_features``."""
        return self.config.hidden_features

    @property
    def output_features(self) -> int:
        """Width of the head's output: ``config.output_features``."""
        return self.config.output_features

    def features(self, batch: GraphBatch) -> Tensor:
        """Pooled graph features (B, hidden_features): :meth:`embed`."""
        return self.embed(batch)

    def layer_features(self, batch: GraphBatch) -> list[Tensor]:
        """Pooled atom features after every ALIGNN and GCN layer, in order, each (B, hidden).

        The last one is :meth:`features`; with no layer at all, the pooled atom embedding.
        """
        pooled: list[Tensor] = []

        def keep(module: nn.Module, args: tuple, output: tuple) -> None:
            pooled.append(self.readout(output[0], batch.node_graph, batch.num_graphs))

        layers = [*self.alignn_layers, *self.gcn_layers]
        handles = [layer.register_forward_hook(keep) for layer in layers]
        try:
            last = self.embed(batch)
        finally:
            for handle in handles:
                handle.remove()
        return pooled if pooled else [last]

    def replace_head(self, output_features: int) -> nn.Module:
        """A freshly initialised ``fc`` of ``output_features`` outputs (config updated)."""
        self.fc = nn.Linear(self.config.hidden_features, output_features)
        self.config = self.config.model_copy(update={"output_features": output_features})
        return self.fc

    def trunk_blocks(self) -> list[tuple[str, nn.Module]]:
        """The paper's layers 1-6 (Fig. 1a): embeddings, ALIGNN layers, GCN layers, readout."""
        names = ("atom_embedding", "edge_embedding", "angle_embedding", "alignn_layers",
                 "gcn_layers", "readout")  # fmt: skip
        return [(name, getattr(self, name)) for name in names]

    def describe(self) -> dict[str, Any]:
        """``kind`` (``alignn``), ``version`` and ``config`` (the :class:`ALIGNNConfig`)."""
        config = self.config.model_dump(mode="json", exclude=EXECUTION_FIELDS)  # not the kernel
        return {"kind": self.family, "version": self.family_version, "config": config}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> ALIGNN:
        """A freshly initialised ALIGNN of :meth:`describe`'s output.

        Raises:
            ValueError: not an ALIGNN description.
        """
        if description.get("kind") != cls.family or "config" not in description:
            raise ValueError(f"not an ALIGNN description: {sorted(description)}")
        return cls(ALIGNNConfig.model_validate(description["config"]))

    @classmethod
    def from_pretrained(cls, source: Mapping[str, object] | str | os.PathLike) -> ALIGNN:
        """An alignn checkpoint (path, state_dict or ``{"model": state_dict}``) in eval mode;
        the widths and depths are read off the weights (:mod:`tlsearch.model.interop`)."""
        state = read_alignn_state_dict(source)
        model = cls(infer_config(state))
        load_alignn_state_dict(model, state)
        return model.eval()

    @classmethod
    def input_store(
        cls,
        records: Sequence[StructureRecord],
        settings: GraphSettings,
        cache_dir: Path | None = None,
        progress: bool = False,
    ) -> GraphStore:
        """The graph cache of ``records`` (:func:`tlsearch.graphs.store.build_graph_store`)."""
        return build_graph_store(records, settings, cache_dir, progress)


def set_kernel(model: nn.Module, kernel: Kernel) -> None:
    """Run every :class:`MLPLayer` and :class:`EdgeGatedGraphConv` of ``model`` (an ALIGNN or
    any module holding layers, e.g. a transfer-learning model) with ``kernel``; each ALIGNN's
    ``config.kernel`` says the same after. A model read from a file runs the kernel its
    reader sets: files keep no kernel (:data:`tlsearch.model.config.EXECUTION_FIELDS`)."""
    check_kernel(kernel)
    for module in model.modules():
        if isinstance(module, MLPLayer | EdgeGatedGraphConv):
            module.kernel = kernel
        elif isinstance(module, ALIGNN) and module.config.kernel != kernel:
            module.config = module.config.model_copy(update={"kernel": kernel})
