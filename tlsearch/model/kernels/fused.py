"""The fused forwards of :class:`~tlsearch.model.layers.MLPLayer` and
:class:`~tlsearch.model.layers.EdgeGatedGraphConv`: the same functions as their reference
equations, with the same parameters, computed by the CPU kernels of this package.

``MLPLayer``: ``silu(BatchNorm(W x + b))`` as one :class:`~.bn_silu.LinearBNSiLU` (chunked,
row-contiguous batch norm and SiLU; much faster on the line graph's many rows on CPU).

``EdgeGatedGraphConv``: one (in, 4 out) matmul for the four node-side linears, the chunked
kernel of :mod:`.edge_gated` for everything edge-sized, and the node update's batch norm +
SiLU + residual as one chunked function (:func:`~.bn_silu.batch_norm_silu`). With
``edges_out=False`` the edge output is not computed (the batch-norm running moments are still
updated).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tlsearch.model.kernels.bn_silu import OneThread, batch_norm_silu, linear_bn_silu
from tlsearch.model.kernels.edge_gated import EdgeIndex, edge_gated_edges

# The layers are typed nn.Module here: tlsearch.model.layers imports this module (their fused
# forwards), so naming their classes would be an import cycle.


def fusable_mlp(layer: nn.Module) -> bool:
    """Whether the fused form covers ``layer`` (an affine batch norm and a biased linear)."""
    linear, bn = layer.layer[0], layer.layer[1]
    return bn.affine and linear.bias is not None


def mlp_forward(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)`` through :class:`~.bn_silu.LinearBNSiLU` (see :func:`fusable_mlp`)."""
    linear, bn = layer.layer[0], layer.layer[1]
    out, mean, var = linear_bn_silu(x, linear, bn)
    if bn.training or bn.running_mean is None:
        update_running_stats(bn, mean, var, count=x.shape[0])
    return out


def edge_gated_forward(
    conv: nn.Module, edge_index: Tensor | EdgeIndex, x: Tensor, y: Tensor, edges_out: bool
) -> tuple[Tensor, Tensor | None]:
    """``conv(edge_index, x, y, edges_out)`` through the kernel of :mod:`.edge_gated`."""
    # a 1 MB concatenation: on one thread it skips an OpenMP wake-up that costs more than it
    with OneThread(x.device.type == "cpu"):
        weight, bias = _node_weight(conv), _node_bias(conv)
    node_proj = F.linear(x, weight, bias)  # [A | C | B | U x]
    bn = conv.bn_edges
    batch_stats = bn.training or bn.running_mean is None
    x_pre, y_new, mean, var = edge_gated_edges(
        node_proj,
        y,
        conv.edge_gate.weight,
        bn.weight,
        bn.bias,
        edge_index,
        None if batch_stats else bn.running_mean,
        None if batch_stats else bn.running_var,
        bn.eps,
        conv.residual,
        edges_out,
    )
    if batch_stats:
        update_running_stats(bn, mean, var, count=y.shape[0])
    x_new, mean, var = batch_norm_silu(x_pre, conv.bn_nodes, x if conv.residual else None)
    update_running_stats(conv.bn_nodes, mean, var, count=x_pre.shape[0])  # when training
    return x_new, y_new


def _node_weight(conv: nn.Module) -> Tensor:
    """(4 out, in): src_gate, dst_update, dst_gate, src_update stacked (the kernel's order)."""
    return torch.cat(
        [conv.src_gate.weight, conv.dst_update.weight, conv.dst_gate.weight,
         conv.src_update.weight]
    )  # fmt: skip


def _node_bias(conv: nn.Module) -> Tensor:
    """(4 out,): as :func:`_node_weight`, with edge_gate's bias folded into src_gate's."""
    return torch.cat(
        [conv.src_gate.bias + conv.edge_gate.bias, conv.dst_update.bias, conv.dst_gate.bias,
         conv.src_update.bias]
    )  # fmt: skip


@torch.no_grad()
def update_running_stats(bn: nn.BatchNorm1d, mean: Tensor, var: Tensor, count: int) -> None:
    """Update ``bn``'s running moments as ``nn.BatchNorm1d.forward`` does in training mode.

    ``var`` is the biased batch variance over ``count`` rows; the running variance tracks the
    unbiased one.
    """
    if not (bn.training and bn.track_running_stats):
        return
    bn.num_batches_tracked.add_(1)
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    bn.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)
    bn.running_var.mul_(1.0 - factor).add_(var, alpha=factor * count / (count - 1))
