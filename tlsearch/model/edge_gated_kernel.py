"""Fused, memory-lean CPU kernel for the edge side of :class:`EdgeGatedGraphConv`.

Why a hand-written autograd function: on a crystal line graph the convolution runs over
T ~ 10^5-10^6 edges with 256 features, so every (T, 256) float32 temporary is hundreds of MB.
With plain autograd the layer allocates about two dozen of them per step, and on CPU the
cost of those allocations (fresh pages from the OS) rivals the arithmetic. This kernel
walks the edges in chunks of a few thousand rows through two or three preallocated
chunk-sized workspaces (``out=`` everywhere, so the loops allocate nothing) and keeps only
two edge-sized tensors alive: the gate pre-activation ``m`` (saved for backward) and the output
``y'`` (skipped when the caller does not need it); ``sigmoid(m)`` and the batch-norm output
are recomputed per chunk in backward. Every chunk workspace is contiguous: ``index_add_``
from a strided source is about ten times slower on CPU.

Forward, per edge ``e = (u -> v)`` and feature (all products elementwise)::

    m_e   = A_u + B_v + W_g y_e            A, C, B, U: node projections (edge bias in A)
    s_e   = sigmoid(m_e)
    h_v   = sum_{e -> v} C_u s_e / (sum_{e -> v} s_e + 1e-6),      x_pre_v = U_v + h_v
    y'_e  = silu(gamma * (m_e - mu) / sqrt(var + eps) + beta)     (+ y_e if residual)

with (mu, var) the biased batch moments of ``m`` (training) or the running ones (eval).

Backward, with ``g_y'`` and ``g_h`` (= ``g_U``) the incoming gradients of ``y'`` and
``x_pre``, and den = sum s + 1e-6::

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
        node_proj: (N, 4D) node projections ``[A | C | B | U]``: src_gate (+ edge_gate
            bias), dst_update, dst_gate and src_update of the node features.
        y: (E, I) edge features.
        weight: (D, I) edge_gate weight (its bias is folded into ``A``).
        gamma, beta: (D,) affine parameters of the edge batch norm.
        src, dst: (E,) long, edge endpoints.
        running_mean, running_var: (D,) running moments, or None to use batch moments.
        eps: batch-norm epsilon.
        residual: whether ``y'`` includes ``+ y`` (requires I == D).
        chunk_rows: edges processed per chunk.
        edges_out: whether to compute ``y'``; when False it is returned as None (nothing
            downstream uses it, e.g. the last layer's edge features).

    Outputs: ``x_pre = U + h`` (N, D), the node update before its batch norm (``h`` the
    aggregated messages), ``y'`` (E, D) or None, and the (D,) mean and biased variance used
    for normalization (non-differentiable; the caller updates running stats).
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
        edges_out: bool,
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        num_nodes, num_edges, dim = node_proj.shape[0], y.shape[0], weight.shape[0]
        rows = max(1, min(chunk_rows, num_edges))
        work = [y.new_empty(rows, dim) for _ in range(2)]
        a_nodes, c_nodes, b_nodes = (p.contiguous() for p in node_proj[:, : 3 * dim].split(dim, 1))
        u_nodes = node_proj[:, 3 * dim :]
        batch_stats = running_mean is None or running_var is None

        m = y.new_empty(num_edges, dim)
        den, num = y.new_zeros(num_nodes, dim), y.new_zeros(num_nodes, dim)  # sum s, sum C_u s
        m_total = y.new_zeros(dim, dtype=torch.float64)
        for sl, n in _chunks(num_edges, rows):
            u, v = src[sl], dst[sl]
            m_c = torch.index_select(a_nodes, 0, u, out=m[sl]).addmm_(y[sl], weight.t())
            m_c += torch.index_select(b_nodes, 0, v, out=work[0][:n])
            s = torch.sigmoid(m_c, out=work[0][:n])
            den.index_add_(0, v, s)
            num.index_add_(0, v, torch.index_select(c_nodes, 0, u, out=work[1][:n]).mul_(s))
            if batch_stats:
                m_total += m_c.sum(0)
        den.add_(GATE_EPS)
        h = num.div_(den)
        x_pre = u_nodes + h

        if batch_stats:
            mean = (m_total / num_edges).to(y.dtype)
            var = _centered_square_mean(m, mean, rows, work[0])
        else:
            mean, var = running_mean, running_var
        invstd = torch.rsqrt(var + eps)
        scale = gamma * invstd
        shift = beta - mean * scale
        y_out = _edge_output(m, y, scale, shift, residual, rows) if edges_out else None

        ctx.save_for_backward(m, c_nodes, den, h, y, weight, mean, invstd, scale, shift, src, dst)
        ctx.batch_stats, ctx.residual, ctx.rows = batch_stats, residual, rows
        ctx.set_materialize_grads(False)
        mean, var = mean.detach().clone(), var.detach().clone()
        ctx.mark_non_differentiable(mean, var)
        return x_pre, y_out, mean, var

    @staticmethod
    def backward(ctx, g_h: Tensor | None, g_out: Tensor | None, *_):
        m, c_nodes, den, h, y, weight, mean, invstd, scale, shift, src, dst = ctx.saved_tensors
        needs = ctx.needs_input_grad
        num_nodes, num_edges, dim, rows = c_nodes.shape[0], m.shape[0], weight.shape[0], ctx.rows
        # three contiguous chunk workspaces: index_add_ from a strided source is ~10x slower
        work = [m.new_empty(rows, dim) for _ in range(3)]
        g_y = torch.empty_like(y) if needs[1] else None

        g_gamma = g_beta = g_z_all = None
        if g_out is not None:
            # g_z = g_out * silu'(z) is kept edge-sized, in g_y's memory when it fits there
            g_z_all = g_y if g_y is not None and g_y.shape[1] == dim else torch.empty_like(m)
            g_gamma, g_beta = _bn_affine_grads(m, g_out, mean, invstd, scale, shift, rows, g_z_all)
            # train-mode BN input gradient: scale * g_z + a * m + b (see module docstring)
            a = -scale * invstd * g_gamma / num_edges
            b = -scale * g_beta / num_edges - a * mean

        if g_h is None:
            g_h = den.new_zeros(num_nodes, dim)
        g_num = g_h / den
        g_den = torch.mul(g_num, h).neg_()
        g_a, g_c, g_b = (m.new_zeros(num_nodes, dim) for _ in range(3)) if needs[0] else [None] * 3
        g_w = torch.zeros_like(weight) if needs[2] else None
        for sl, n in _chunks(num_edges, rows):
            u, v, m_c = src[sl], dst[sl], m[sl]
            g_num_v = torch.index_select(g_num, 0, v, out=work[0][:n])
            g_s = torch.index_select(c_nodes, 0, u, out=work[1][:n]).mul_(g_num_v)
            g_s += torch.index_select(g_den, 0, v, out=work[2][:n])  # dL/ds_e
            sig = torch.sigmoid(m_c, out=work[2][:n])
            g_c_e = g_num_v.mul_(sig)  # dL/dC_u contributions: g_num_v * s_e
            g_m = _sigmoid_backward(g_s, sig, grad_input=g_s)
            if g_out is not None:
                g_m.addcmul_(g_z_all[sl], scale)
                if ctx.batch_stats:
                    g_m.addcmul_(m_c, a).add_(b)
            if g_a is not None:
                g_a.index_add_(0, u, g_m)
                g_c.index_add_(0, u, g_c_e)
                g_b.index_add_(0, v, g_m)
            if g_y is not None:  # overwrites g_z (already used) with dL/dy
                if ctx.residual and g_out is not None:
                    torch.addmm(g_out[sl], g_m, weight, out=g_y[sl])
                else:
                    torch.mm(g_m, weight, out=g_y[sl])
            if g_w is not None:
                g_w.addmm_(g_m.t(), y[sl])
        g_node_proj = torch.cat([g_a, g_c, g_b, g_h], dim=1) if needs[0] else None
        g_gamma = g_gamma if needs[3] else None
        g_beta = g_beta if needs[4] else None
        return g_node_proj, g_y, g_w, g_gamma, g_beta, *([None] * 8)


def _edge_output(
    m: Tensor, y: Tensor, scale: Tensor, shift: Tensor, residual: bool, rows: int
) -> Tensor:
    """``y' = silu(m * scale + shift)`` (``+ y`` if residual), chunk by chunk."""
    y_out = torch.empty_like(m)
    for sl, _ in _chunks(m.shape[0], rows):
        out = torch.addcmul(shift, m[sl], scale, out=y_out[sl])
        F.silu(out, inplace=True)
        if residual:
            out += y[sl]
    return y_out


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
    g_z_out: Tensor,
) -> tuple[Tensor, Tensor]:
    """``(g_gamma, g_beta)``: sums over edges of ``g_z * x_hat`` and ``g_z``.

    ``z = m * scale + shift`` is the SiLU input and ``g_z = g_out * silu'(z)``; ``g_z`` is
    written to ``g_z_out`` (E, D) for the caller's second pass.
    """
    g_gamma = m.new_zeros(m.shape[1], dtype=torch.float64)
    g_beta = m.new_zeros(m.shape[1], dtype=torch.float64)
    scratch = m.new_empty(rows, m.shape[1])
    for sl, n in _chunks(m.shape[0], rows):
        z = torch.addcmul(shift, m[sl], scale, out=scratch[:n])
        g_z = _silu_backward(g_out[sl], z, grad_input=g_z_out[sl])
        g_beta += g_z.sum(0)
        g_gamma += torch.sub(m[sl], mean, out=scratch[:n]).mul_(g_z).sum(0)
    return (g_gamma * invstd).to(m.dtype), g_beta.to(m.dtype)


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
    edges_out: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """Apply :class:`EdgeGatedEdges`; returns ``(x_pre, y', mean, var)`` (see its docstring)."""
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
        edges_out,
    )
