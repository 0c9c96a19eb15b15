"""ALIGNN building blocks in plain PyTorch, parameter-compatible with ``alignn.models``.

Graphs are given as ``edge_index`` (2, E) long tensors: row 0 = source, row 1 = destination.
The submodule names and the update equations are those of alignn's ``RBFExpansion``,
``MLPLayer``, ``EdgeGatedGraphConv`` and ``ALIGNNConv``, so their ``state_dict`` keys and
shapes are identical and weights can be moved between the two implementations.

The code here is the reference: the equations as plain PyTorch. ``MLPLayer`` and
``EdgeGatedGraphConv`` also run the same functions through the fused CPU kernels of
:mod:`tlsearch.model.kernels` when their ``kernel`` setting (``auto``, ``reference`` or
``fused``, see :mod:`tlsearch.model.kernels.choice`) picks them on the input's device;
:func:`tlsearch.model.alignn.set_kernel` changes it on every layer of a model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tlsearch.model.config import Kernel
from tlsearch.model.kernels import fused
from tlsearch.model.kernels.choice import check_kernel, uses_fused
from tlsearch.model.kernels.edge_gated import GATE_EPS, EdgeIndex


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

    ``kernel`` (``auto``, ``reference`` or ``fused``; see :mod:`tlsearch.model.kernels.choice`)
    picks how it is computed on the input's device: the ``nn.Sequential`` (reference), or one
    chunked linear + batch norm + SiLU (:func:`tlsearch.model.kernels.fused.mlp_forward`,
    much faster on the line graph's many rows on CPU). Parameters are the same either way.
    """

    def __init__(self, in_features: int, out_features: int, kernel: Kernel = "auto") -> None:
        super().__init__()
        self.kernel = check_kernel(kernel)
        self.layer = nn.Sequential(
            nn.Linear(in_features, out_features),
            nn.BatchNorm1d(out_features),
            nn.SiLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        if uses_fused(self.kernel, x.device) and fused.fusable_mlp(self):
            return fused.mlp_forward(self, x)
        return self.layer(x)


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

    ``kernel`` (``auto``, ``reference`` or ``fused``; see :mod:`tlsearch.model.kernels.choice`)
    picks how it is computed on the input's device: the direct transcription of the equations
    above (reference), or one (in, 4 out) matmul for the four node-side linears and the chunked
    CPU kernels of :mod:`tlsearch.model.kernels` for everything edge-sized and the node update
    (:func:`tlsearch.model.kernels.fused.edge_gated_forward`; several times faster on CPU).
    Parameters are the same either way.

    ``forward(..., edges_out=False)`` returns ``None`` in place of ``y'`` and, when fused,
    skips computing it (the batch-norm running moments are still updated): for a last layer
    whose edge features nothing reads. ``edge_index`` may also be an
    :class:`~tlsearch.model.kernels.edge_gated.EdgeIndex`, which caches the fused kernel's
    index structures across the layers that share a graph.
    """

    def __init__(
        self,
        input_features: int,
        output_features: int,
        residual: bool = True,
        kernel: Kernel = "auto",
    ) -> None:
        super().__init__()
        if residual and input_features != output_features:
            raise ValueError("residual connections need input_features == output_features")
        self.residual = residual
        self.kernel = check_kernel(kernel)
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
        if uses_fused(self.kernel, x.device):
            return fused.edge_gated_forward(self, edge_index, x, y, edges_out)
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


class ALIGNNConv(nn.Module):
    r"""One ALIGNN layer: an edge-gated conv on the bond graph, then one on the line graph.

    .. math::
        (x', m) = \mathrm{EGGC}_g(x, y), \qquad (y', z') = \mathrm{EGGC}_{lg}(m, z)

    Shapes: ``x`` (N, in) atoms, ``y`` (E, in) bonds, ``z`` (T, out) bond pairs;
    ``edge_index`` (2, E) over atoms, ``lg_index`` (2, T) over bonds. With
    ``angles_out=False`` the returned ``z'`` is None (see :class:`EdgeGatedGraphConv`).
    """

    def __init__(self, in_features: int, out_features: int, kernel: Kernel = "auto") -> None:
        super().__init__()
        self.node_update = EdgeGatedGraphConv(in_features, out_features, kernel=kernel)
        self.edge_update = EdgeGatedGraphConv(out_features, out_features, kernel=kernel)

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
