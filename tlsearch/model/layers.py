"""ALIGNN building blocks in plain PyTorch, parameter-compatible with ``alignn.models``.

Graphs are given as ``edge_index`` (2, E) long tensors: row 0 = source, row 1 = destination.
The submodule names and the update equations are those of alignn's ``RBFExpansion``,
``MLPLayer``, ``EdgeGatedGraphConv`` and ``ALIGNNConv``, so their ``state_dict`` keys and
shapes are identical and weights can be moved between the two implementations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tlsearch.model.bn_silu import OneThread, batch_norm_silu, linear_bn_silu
from tlsearch.model.edge_gated_kernel import GATE_EPS, EdgeIndex, edge_gated_edges


class RBFExpansion(nn.Module):
    r"""Expand scalars on Gaussian radial basis functions with evenly spaced centers.

    .. math::
        \mathrm{rbf}(d)_k = \exp\left(-\gamma (d - c_k)^2\right), \quad
        c_k = v_{\min} + k \Delta, \quad \gamma = 1 / \Delta

    Note that ``gamma = 1 / lengthscale`` (not ``1 / lengthscale**2``) with the default
    lengthscale ``Delta`` (the center spacing): this is alignn's convention and is kept for
    checkpoint compatibility.

    Shapes: input (E,), output (E, bins). The ``centers`` buffer is in the ``state_dict``.
    Entries below the dtype's smallest normal number (``finfo.tiny``) are returned as 0.
    """

    def __init__(
        self, vmin: float = 0.0, vmax: float = 8.0, bins: int = 40, lengthscale: float | None = None
    ) -> None:
        super().__init__()
        if bins < 2:
            raise ValueError(f"RBFExpansion needs at least 2 bins, got {bins}")
        self.vmin, self.vmax, self.bins = vmin, vmax, bins
        self.register_buffer("centers", torch.linspace(vmin, vmax, bins))
        if lengthscale is None:
            self.lengthscale = float(torch.diff(self.centers).mean())
            self.gamma = 1.0 / self.lengthscale
        else:
            self.lengthscale = float(lengthscale)
            self.gamma = 1.0 / self.lengthscale**2

    def forward(self, distance: Tensor) -> Tensor:
        rbf = torch.exp(-self.gamma * (distance.unsqueeze(1) - self.centers) ** 2)
        # exp gives subnormal floats (below finfo.tiny, ~1.2e-38 in float32) where
        # gamma (d - c_k)^2 is ~87-104: ~4.5% of a bond RBF's entries with the paper's 80 bins.
        # x86 multiplies subnormals on a slow path: the matmuls that read this output ran 4-15x
        # slower (weight gradient of a 1,754-bond batch: 6.5 ms vs 0.4 ms). Flushed to zero,
        # which changes no value by more than finfo.tiny.
        return rbf.masked_fill(rbf < torch.finfo(rbf.dtype).tiny, 0.0)


class MLPLayer(nn.Module):
    """``x' = silu(BatchNorm(W x + b))``; shapes (M, in) -> (M, out).

    ``fused=True`` (default) computes it with :class:`~tlsearch.model.bn_silu.LinearBNSiLU`
    (chunked, row-contiguous batch norm and SiLU; much faster on the line graph's many rows
    on CPU); ``fused=False`` runs the ``nn.Sequential``. Parameters are the same either way.
    """

    def __init__(self, in_features: int, out_features: int, fused: bool = True) -> None:
        super().__init__()
        self.fused = fused
        self.layer = nn.Sequential(
            nn.Linear(in_features, out_features),
            nn.BatchNorm1d(out_features),
            nn.SiLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        linear, bn = self.layer[0], self.layer[1]
        if not (self.fused and bn.affine and linear.bias is not None):
            return self.layer(x)
        out, mean, var = linear_bn_silu(x, linear, bn)
        if bn.training or bn.running_mean is None:
            _update_running_stats(bn, mean, var, count=x.shape[0])
        return out


class EdgeGatedGraphConv(nn.Module):
    r"""Edge-gated graph convolution (Bresson & Laurent, arXiv:1711.07553), alignn variant.

    For every edge :math:`e = (u \to v)` and node :math:`v` (products elementwise):

    .. math::
        m_e &= W_{sg} x_u + W_{dg} x_v + W_{eg} y_e, \qquad \sigma_e = \mathrm{sigmoid}(m_e) \\
        h_v &= \frac{\sum_{e: u \to v} \sigma_e \odot W_{du} x_u}
                    {\sum_{e: u \to v} \sigma_e + 10^{-6}} \\
        x'_v &= x_v + \mathrm{silu}(\mathrm{BN}(W_{su} x_v + h_v)), \qquad
        y'_e = y_e + \mathrm{silu}(\mathrm{BN}(m_e))

    (biases omitted; the ``x_v +``/``y_e +`` residuals only when ``residual``).

    Shapes: ``x`` (N, in), ``y`` (E, in), ``edge_index`` (2, E) -> ``x'`` (N, out),
    ``y'`` (E, out).

    ``fused=True`` (default) computes the same function with one (in, 4 out) matmul for the
    four node-side linears and the chunked kernel of
    :mod:`tlsearch.model.edge_gated_kernel` for everything edge-sized (several times
    faster on CPU), and the node update's batch norm + SiLU + residual as one chunked function
    (:func:`~tlsearch.model.bn_silu.batch_norm_silu`); ``fused=False`` is the direct
    transcription of the equations above.
    Parameters are the same either way.

    ``forward(..., edges_out=False)`` returns ``None`` in place of ``y'`` and, when fused,
    skips computing it (the batch-norm running moments are still updated): for a last layer
    whose edge features nothing reads. ``edge_index`` may also be an
    :class:`~tlsearch.model.edge_gated_kernel.EdgeIndex`, which caches the kernel's index
    structures across the layers that share a graph.
    """

    def __init__(
        self, input_features: int, output_features: int, residual: bool = True, fused: bool = True
    ) -> None:
        super().__init__()
        if residual and input_features != output_features:
            raise ValueError("residual connections need input_features == output_features")
        self.residual = residual
        self.fused = fused
        self.src_gate = nn.Linear(input_features, output_features)
        self.dst_gate = nn.Linear(input_features, output_features)
        self.edge_gate = nn.Linear(input_features, output_features)
        self.bn_edges = nn.BatchNorm1d(output_features)
        self.src_update = nn.Linear(input_features, output_features)
        self.dst_update = nn.Linear(input_features, output_features)
        self.bn_nodes = nn.BatchNorm1d(output_features)

    def forward(
        self, edge_index: Tensor | EdgeIndex, x: Tensor, y: Tensor, edges_out: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        if self.fused:
            return self._forward_fused(edge_index, x, y, edges_out)
        if isinstance(edge_index, EdgeIndex):
            edge_index = edge_index.edge_index
        x_new, y_new = self._forward_reference(edge_index, x, y)
        return x_new, y_new if edges_out else None

    def _forward_reference(self, edge_index: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        src, dst = edge_index[0], edge_index[1]
        m = (
            self.src_gate(x).index_select(0, src)
            + self.dst_gate(x).index_select(0, dst)
            + self.edge_gate(y)
        )
        sigma = torch.sigmoid(m)
        messages = self.dst_update(x).index_select(0, src) * sigma
        sum_sigma_h = x.new_zeros(x.shape[0], m.shape[1]).index_add_(0, dst, messages)
        sum_sigma = x.new_zeros(x.shape[0], m.shape[1]).index_add_(0, dst, sigma)
        h = sum_sigma_h / (sum_sigma + GATE_EPS)
        x_new = F.silu(self.bn_nodes(self.src_update(x) + h))
        y_new = F.silu(self.bn_edges(m))
        if self.residual:
            return x + x_new, y + y_new
        return x_new, y_new

    def _forward_fused(
        self, edge_index: Tensor | EdgeIndex, x: Tensor, y: Tensor, edges_out: bool
    ) -> tuple[Tensor, Tensor | None]:
        # a 1 MB concatenation: measured 340 us on 2 threads (an OpenMP wake-up), 60 us on one
        with OneThread(x.device.type == "cpu"):
            weight, bias = self._node_weight(), self._node_bias()
        node_proj = F.linear(x, weight, bias)  # [A | C | B | U x]
        bn = self.bn_edges
        batch_stats = bn.training or bn.running_mean is None
        x_pre, y_new, mean, var = edge_gated_edges(
            node_proj,
            y,
            self.edge_gate.weight,
            bn.weight,
            bn.bias,
            edge_index,
            None if batch_stats else bn.running_mean,
            None if batch_stats else bn.running_var,
            bn.eps,
            self.residual,
            edges_out,
        )
        if batch_stats:
            _update_running_stats(bn, mean, var, count=y.shape[0])
        x_new, mean, var = batch_norm_silu(x_pre, self.bn_nodes, x if self.residual else None)
        _update_running_stats(self.bn_nodes, mean, var, count=x_pre.shape[0])  # when training
        return x_new, y_new

    def _node_weight(self) -> Tensor:
        """(4 out, in): src_gate, dst_update, dst_gate, src_update stacked (kernel's order)."""
        return torch.cat(
            [
                self.src_gate.weight,
                self.dst_update.weight,
                self.dst_gate.weight,
                self.src_update.weight,
            ]
        )

    def _node_bias(self) -> Tensor:
        """(4 out,): as :meth:`_node_weight`, with edge_gate's bias folded into src_gate's."""
        return torch.cat(
            [
                self.src_gate.bias + self.edge_gate.bias,
                self.dst_update.bias,
                self.dst_gate.bias,
                self.src_update.bias,
            ]
        )


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm1d, mean: Tensor, var: Tensor, count: int) -> None:
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


class ALIGNNConv(nn.Module):
    r"""One ALIGNN layer: an edge-gated conv on the bond graph, then one on the line graph.

    .. math::
        (x', m) = \mathrm{EGGC}_g(x, y), \qquad (y', z') = \mathrm{EGGC}_{lg}(m, z)

    Shapes: ``x`` (N, in) atoms, ``y`` (E, in) bonds, ``z`` (T, out) bond pairs;
    ``edge_index`` (2, E) over atoms, ``lg_index`` (2, T) over bonds. With
    ``angles_out=False`` the returned ``z'`` is None (see :class:`EdgeGatedGraphConv`).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.node_update = EdgeGatedGraphConv(in_features, out_features)
        self.edge_update = EdgeGatedGraphConv(out_features, out_features)

    def forward(
        self,
        edge_index: Tensor | EdgeIndex,
        lg_index: Tensor | EdgeIndex,
        x: Tensor,
        y: Tensor,
        z: Tensor,
        angles_out: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        x, m = self.node_update(edge_index, x, y)
        y, z = self.edge_update(lg_index, m, z, edges_out=angles_out)
        return x, y, z
