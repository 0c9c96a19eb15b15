"""alignn's pure-PyTorch ALIGNN (``ALIGNNAtomWisePure``) as the peer of benchmarks and parity
tests: built at the widths and depths of an :class:`ALIGNNConfig`, fed the graphs of a
:class:`GraphBatch` (line graph precomputed). Needs the ``alignn`` package (``.[peer]``),
imported lazily.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlsearch.graphs.batch import GraphBatch
from tlsearch.model.config import EXECUTION_FIELDS, ALIGNNConfig


def alignn_pure_model(config: ALIGNNConfig) -> nn.Module:
    """alignn's ``ALIGNNAtomWisePure`` as a plain property model (no forces, no ZBL term)."""
    from alignn.models import alignn_atomwise_pure as pure

    return pure.ALIGNNAtomWisePure(
        pure.ALIGNNAtomWisePureConfig(
            name="alignn_atomwise_pure",
            **config.model_dump(exclude=EXECUTION_FIELDS),  # alignn has no kernel setting
            calculate_gradient=False,
            energy_mult_natoms=False,
            use_penalty=False,
            lg_on_fly=False,
        )
    )


def alignn_graphs(batch: GraphBatch) -> tuple[Any, Any]:
    """``(g, lg)``: the batch's crystal graph and line graph as alignn ``TorchGraph`` objects."""
    from alignn.torch_graph_builder import TorchGraph

    sizes = torch.bincount(batch.node_graph, minlength=batch.num_graphs)
    edge_graph = batch.node_graph[batch.edge_index[0]]
    g = TorchGraph(
        num_nodes=batch.num_nodes,
        src=batch.edge_index[0],
        dst=batch.edge_index[1],
        ndata={"atom_features": batch.atom_features},
        edata={"r": batch.edge_vectors},
        batch_num_nodes=sizes,
        batch_num_edges=torch.bincount(edge_graph, minlength=batch.num_graphs),
    )
    lg = TorchGraph(
        num_nodes=batch.num_edges,
        src=batch.lg_index[0],
        dst=batch.lg_index[1],
        edata={"h": batch.angle_cosines},
    )
    return g, lg
