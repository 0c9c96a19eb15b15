"""Graph readout: average of the node features of each graph in a batch."""

from __future__ import annotations

from torch import Tensor, nn


def average_pool(x: Tensor, node_graph: Tensor, num_graphs: int) -> Tensor:
    r"""Mean of the node features of every graph.

    .. math:: h_b = \frac{1}{|V_b|} \sum_{v \in V_b} x_v

    Shapes: ``x`` (N, D), ``node_graph`` (N,) long graph index per node -> (B, D) with
    B = ``num_graphs``. A graph without nodes gets zeros.
    """
    sums = x.new_zeros(num_graphs, x.shape[1]).index_add_(0, node_graph, x)
    counts = x.new_zeros(num_graphs).index_add_(0, node_graph, x.new_ones(x.shape[0]))
    return sums / counts.clamp_min(1.0).unsqueeze(1)


class AvgPooling(nn.Module):
    """Module form of :func:`average_pool` (no parameters), named like DGL's ``AvgPooling``."""

    def forward(self, x: Tensor, node_graph: Tensor, num_graphs: int) -> Tensor:
        return average_pool(x, node_graph, num_graphs)
