"""Fused, memory-lean CPU kernel for the edge side of :class:`EdgeGatedGraphConv`.

Why a hand-written autograd function: on a crystal line graph the convolution runs over
T ~ 10^5-10^6 edges with 256 features, so every (T, 256) float32 temporary is hundreds of MB.
With plain autograd the layer allocates about two dozen of them per step, and on CPU the
cost of those allocations (fresh pages from the OS) rivals the arithmetic. This kernel
walks the edges in chunks of a few thousand rows through three preallocated chunk-sized
workspaces (``out=`` everywhere, so the loops allocate nothing) and keeps only two
edge-sized tensors alive: the gate pre-activation ``m`` (saved for backward) and the output
``y'``; ``sigmoid(m)`` and the batch-norm output are recomputed per chunk in backward.

Forward, per edge ``e = (u -> v)`` and feature (all products elementwise)::

    m_e   = A_u + B_v + W_g y_e            A, C, B: node projections (edge bias folded in A)
    s_e   = sigmoid(m_e)
    h_v   = sum_{e -> v} C_u s_e / (sum_{e -> v} s_e + 1e-6)
    y'_e  = silu(gamma * (m_e - mu) / sqrt(var + eps) + beta)     (+ y_e if residual)

with (mu, var) the biased batch moments of ``m`` (training) or the running ones (eval).

Backward, with ``g_y'`` and ``g_h`` the incoming gradients and den = sum s + 1e-6::

    g_z     = g_y' * silu'(z),                 z = gamma * x_hat + beta
    g_beta  = sum_e g_z,   g_gamma = sum_e g_z * x_hat
    g_m_bn  = gamma / sqrt(var + eps) * (g_z - g_beta / E - x_hat * g_gamma / E)   (train)
    g_s_e   = g_h_v / den_v * C_u - g_h_v * h_v / den_v
    g_m_e   = g_s_e * s_e * (1 - s_e) + g_m_bn_e
    g_A_u  += g_m_e,   g_B_v += g_m_e,   g_C_u += g_h_v / den_v * s_e
    g_W_g   = sum_e g_m_e^T y_e,   g_y_e = g_m_e W_g (+ g_y'_e if residual)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.nn import functional as F

#: Added to the gate sum in the aggregation denominator, as in alignn.
GATE_EPS = 1e-6
#: Elements of one (rows, features) chunk workspace on CPU: 2**22 floats = 16 MB, i.e.
#: 16384 rows of 256 features. On 2 idle cores 4096-32768-row chunks run within ~15% of each
#: other (best near 8192), but every op is an OpenMP region ending in a barrier, and when
#: other processes compete for the cores each barrier waits for a descheduled thread: a
#: (T=200k, 256) layer took 24 s with 4096-row chunks, 8 s with 16384, 4.3 s unchunked
#: (1.7 s idle). This size keeps most of the cache benefit with few regions. On GPUs the
#: whole edge set is one chunk.
CHUNK_ELEMENTS = 1 << 22

_silu_backward = torch.ops.aten.silu_backward.grad_input  # g * silu'(z), into grad_input
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # g * s * (1 - s)


def _chunks(total: int, rows: int) -> Iterator[tuple[slice, int]]:
    """``(rows slice, rows in it)`` covering ``range(total)``."""
    for start in range(0, total, rows):
        stop = min(start + rows, total)
        yield slice(start, stop), stop - start


class EdgeGatedEdges(torch.autograd.Function):
    """The gated aggregation and the edge update ``y'`` of an edge-gated convolution.

    Inputs (shapes with N nodes, E edges, D output and I input features):
        node_proj: (N, 3D) node projections ``[A | C | B]``: src_gate (+ edge_gate bias),
            dst_update and dst_gate of the node features.
        y: (E, I) edge features.
        weight: (D, I) edge_gate weight (its bias is folded into ``A``).
        gamma, beta: (D,) affine parameters of the edge batch norm.
        src, dst: (E,) long, edge endpoints.
        running_mean, running_var: (D,) running moments, or None to use batch moments.
        eps: batch-norm epsilon.
        residual: whether ``y'`` includes ``+ y`` (requires I == D).
        chunk_rows: edges processed per chunk.

    Outputs: ``h`` (N, D) aggregated messages, ``y'`` (E, D), and the (D,) mean and biased
    variance used for normalization (non-differentiable; the caller updates running stats).
    """

    @staticmethod
    def forward(
        ctx,
        node_proj: Tensor,
        y: Tensor,
        weight: Tensor,
        gamma: Tensor,
        beta: Tensor,
        src: Tensor,
        dst: Tensor,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        eps: float,
        residual: bool,
        chunk_rows: int,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        num_nodes, num_edges, dim = node_proj.shape[0], y.shape[0], weight.shape[0]
        rows = max(1, min(chunk_rows, num_edges))
        wide, narrow = y.new_empty(rows, 2 * dim), y.new_empty(rows, dim)
        ac_nodes = node_proj[:, : 2 * dim].contiguous()  # [A | C]
        b_nodes = node_proj[:, 2 * dim :].contiguous()  # B
        batch_stats = running_mean is None or running_var is None

        m = y.new_empty(num_edges, dim)
        sums = y.new_zeros(num_nodes, 2 * dim)  # [sum s | sum C_u s]
        m_total = y.new_zeros(dim, dtype=torch.float64)
        for sl, n in _chunks(num_edges, rows):
            u, v = src[sl], dst[sl]
            msg = torch.index_select(ac_nodes, 0, u, out=wide[:n])  # [A_u | C_u]
            m_c = torch.addmm(msg[:, :dim], y[sl], weight.t(), out=m[sl])
            m_c += torch.index_select(b_nodes, 0, v, out=narrow[:n])
            torch.sigmoid(m_c, out=msg[:, :dim])
            msg[:, dim:] *= msg[:, :dim]  # [s | C_u s]
            sums.index_add_(0, v, msg)
            if batch_stats:
                m_total += m_c.sum(0)
        den = sums[:, :dim].add_(GATE_EPS)
        h = sums[:, dim:].div_(den)

        if batch_stats:
            mean = (m_total / num_edges).to(y.dtype)
            var = _centered_square_mean(m, mean, rows, narrow)
        else:
            mean, var = running_mean, running_var
        invstd = torch.rsqrt(var + eps)
        scale = gamma * invstd
        shift = beta - mean * scale
        y_out = torch.empty_like(m)
        for sl, _ in _chunks(num_edges, rows):
            out = torch.addcmul(shift, m[sl], scale, out=y_out[sl])
            F.silu(out, inplace=True)
            if residual:
                out += y[sl]

        ctx.save_for_backward(m, ac_nodes, den, h, y, weight, mean, invstd, scale, shift, src, dst)
        ctx.batch_stats, ctx.residual, ctx.rows = batch_stats, residual, rows
        ctx.set_materialize_grads(False)
        mean, var = mean.detach().clone(), var.detach().clone()
        ctx.mark_non_differentiable(mean, var)
        return h, y_out, mean, var

    @staticmethod
    def backward(ctx, g_h: Tensor | None, g_out: Tensor | None, *_):
        m, ac_nodes, den, h, y, weight, mean, invstd, scale, shift, src, dst = ctx.saved_tensors
        needs = ctx.needs_input_grad
        num_nodes, num_edges, dim, rows = ac_nodes.shape[0], m.shape[0], weight.shape[0], ctx.rows
        wide, narrow, narrow2 = (
            m.new_empty(rows, 2 * dim),
            m.new_empty(rows, dim),
            m.new_empty(rows, dim),
        )
        c_nodes = ac_nodes[:, dim:].contiguous()

        g_gamma = g_beta = None
        if g_out is not None:
            g_gamma, g_beta = _bn_affine_grads(
                m, g_out, mean, invstd, scale, shift, rows, narrow, narrow2
            )
            # train-mode BN input gradient: scale * g_z + a * m + b (see module docstring)
            a = -scale * invstd * g_gamma / num_edges
            b = -scale * g_beta / num_edges - a * mean

        if g_h is None:
            g_h = den.new_zeros(num_nodes, dim)
        g_num = g_h / den
        g_sums = torch.cat([-(g_num * h), g_num], dim=1)  # [g_den | g_num]
        g_ac = m.new_zeros(num_nodes, 2 * dim) if needs[0] else None
        g_b = m.new_zeros(num_nodes, dim) if needs[0] else None
        g_y = torch.empty_like(y) if needs[1] else None
        g_w = torch.zeros_like(weight) if needs[2] else None
        for sl, n in _chunks(num_edges, rows):
            u, v, m_c = src[sl], dst[sl], m[sl]
            buf = torch.index_select(g_sums, 0, v, out=wide[:n])  # [g_den_v | g_num_v]
            g_s = torch.index_select(c_nodes, 0, u, out=narrow[:n])
            g_s.mul_(buf[:, dim:]).add_(buf[:, :dim])  # dL/ds_e
            sig = torch.sigmoid(m_c, out=narrow2[:n])
            buf[:, dim:] *= sig  # dL/dC_u contributions: g_num_v * s_e
            g_m = _sigmoid_backward(g_s, sig, grad_input=buf[:, :dim])  # buf = [g_m | g_C]
            if g_out is not None:
                z = torch.addcmul(shift, m_c, scale, out=narrow[:n])
                g_z = _silu_backward(g_out[sl], z, grad_input=narrow2[:n])
                g_m.addcmul_(g_z, scale)
                if ctx.batch_stats:
                    g_m.addcmul_(m_c, a).add_(b)
            if g_ac is not None:
                g_ac.index_add_(0, u, buf)
                g_b.index_add_(0, v, g_m)
            if g_y is not None:
                if ctx.residual and g_out is not None:
                    torch.addmm(g_out[sl], g_m, weight, out=g_y[sl])
                else:
                    torch.mm(g_m, weight, out=g_y[sl])
            if g_w is not None:
                g_w.addmm_(g_m.t(), y[sl])
        g_node_proj = torch.cat([g_ac, g_b], dim=1) if needs[0] else None
        g_gamma = g_gamma if needs[3] else None
        g_beta = g_beta if needs[4] else None
        return g_node_proj, g_y, g_w, g_gamma, g_beta, *([None] * 7)


def _centered_square_mean(m: Tensor, mean: Tensor, rows: int, scratch: Tensor) -> Tensor:
    """Biased column variance ``mean((m - mean)**2, 0)`` of (E, D) ``m``, chunk by chunk."""
    total = m.new_zeros(m.shape[1], dtype=torch.float64)
    for sl, n in _chunks(m.shape[0], rows):
        total += torch.sub(m[sl], mean, out=scratch[:n]).square_().sum(0)
    return (total / m.shape[0]).to(m.dtype)


def _bn_affine_grads(
    m: Tensor,
    g_out: Tensor,
    mean: Tensor,
    invstd: Tensor,
    scale: Tensor,
    shift: Tensor,
    rows: int,
    scratch: Tensor,
    scratch2: Tensor,
) -> tuple[Tensor, Tensor]:
    """``(g_gamma, g_beta)``: sums over edges of ``g_z * x_hat`` and ``g_z``.

    ``z = m * scale + shift`` is the SiLU input and ``g_z = g_out * silu'(z)``.
    """
    g_gamma = m.new_zeros(m.shape[1], dtype=torch.float64)
    g_beta = m.new_zeros(m.shape[1], dtype=torch.float64)
    for sl, n in _chunks(m.shape[0], rows):
        z = torch.addcmul(shift, m[sl], scale, out=scratch[:n])
        g_z = _silu_backward(g_out[sl], z, grad_input=scratch2[:n])
        g_beta += g_z.sum(0)
        x_hat = torch.sub(m[sl], mean, out=scratch[:n]).mul_(invstd)
        g_gamma += x_hat.mul_(g_z).sum(0)
    return g_gamma.to(m.dtype), g_beta.to(m.dtype)


def edge_gated_edges(
    node_proj: Tensor,
    y: Tensor,
    weight: Tensor,
    gamma: Tensor,
    beta: Tensor,
    edge_index: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    eps: float,
    residual: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Apply :class:`EdgeGatedEdges`; returns ``(h, y', mean, var)`` (see its docstring)."""
    num_edges, dim = y.shape[0], weight.shape[0]
    if running_mean is None and num_edges < 2:
        raise ValueError(
            f"Expected more than 1 edge to compute batch-norm statistics, got {num_edges}"
        )
    chunk_rows = max(1, CHUNK_ELEMENTS // dim) if y.device.type == "cpu" else max(1, num_edges)
    src, dst = edge_index[0], edge_index[1]
    return EdgeGatedEdges.apply(
        node_proj,
        y,
        weight,
        gamma,
        beta,
        src,
        dst,
        running_mean,
        running_var,
        eps,
        residual,
        chunk_rows,
    )
