"""Fused, memory-lean CPU kernel for the edge side of :class:`EdgeGatedGraphConv`.

Why a hand-written autograd function: on a crystal line graph the convolution runs over
T ~ 10^5-10^6 edges with 256 features, so every (T, 256) float32 temporary is hundreds of MB.
With plain autograd the layer allocates about two dozen of them per step, and on CPU the
cost of those allocations (fresh pages from the OS) rivals the arithmetic. This kernel
walks the edges in chunks of a few thousand rows (see
:data:`~tlsearch.model.kernels.bn_silu.CHUNK_ELEMENTS`) through chunk-sized workspaces and keeps few
edge-sized tensors alive: the gate pre-activation ``m`` (saved for backward, one part per
chunk), the gates ``s = sigmoid(m)`` on small graphs (:data:`SAVE_GATES_ELEMENTS`; else
recomputed in backward) and the output ``y'`` (skipped when the caller does not need it); the
batch-norm output is recomputed per chunk in backward.

Index work goes through ``embedding_bag`` (fbgemm kernels on CPU, parallel over bags), with
per-chunk structures built once per graph (:class:`EdgeIndex`): the sums over a node's edges
are bag sums over a sort permutation (faster than ``index_add_``, which is effectively
single-threaded on CPU), and ``A_u + B_v`` (forward) and
``C_u - h_v`` (backward) are one two-row bag per edge from a stacked node table (one pass
instead of two gathers and an add). Small graphs run their elementwise ops on one thread
(:class:`~tlsearch.model.kernels.bn_silu.OneThread`); large ones on a multi-threaded CPU deal their
chunks to chunk workers (:mod:`~tlsearch.model.kernels.chunk_workers`: Python threads with one torch
thread each, per-worker partial sums reduced in order).

Where the native loops of :mod:`tlsearch.model.kernels.native` are available (a C compiler on the
machine; float32 on CPU), each chunk runs its matmul and then one fused loop instead of the
elementwise and index passes above: forward ``m += A_u + B_v``, the gates, the scatter-adds of
``den`` and ``num`` and the batch moments (sums of ``m - shift`` and of its squares, ``shift``
the first edge's ``m``: no pass of their own) in one pass; backward ``g_m`` and its
scatter-adds into ``g_A``, ``g_B``, ``g_C`` in one (the gates recomputed there, as fast as
reading them back), leaving the residual gradient in ``g_y``'s rows for the matmul to add to.
The batch-norm passes go through the same loops (:mod:`.bn_silu`). ``tlsearch bench kernels``
measures the training step with the loops and with the torch ops (bench/README.md).

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

from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache, cached_property

import torch
from torch import Tensor
from torch.nn import functional as F

from tlsearch.model.kernels import native
from tlsearch.model.kernels.bn_silu import (
    CHUNK_ELEMENTS,
    OneThread,
    affine_grads,
    centered_variance,
    input_grad_terms,
    is_small,
    normalize_silu,
    row_chunks,
    shifted_moments,
    split_plan,
)
from tlsearch.model.kernels.chunk_workers import reduce_in_order, split_map

#: Added to the gate sum in the aggregation denominator, as in alignn.
GATE_EPS = 1e-6
#: The gates ``s = sigmoid(m)`` are kept from forward to backward (instead of recomputed there)
#: when the edges have at most this many elements: one more edge-sized tensor per layer (64 MB
#: at this bound) saves one sigmoid pass, the costliest elementwise pass of the backward.
SAVE_GATES_ELEMENTS = 1 << 24
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # g * s * (1 - s)


@dataclass(frozen=True)
class _Segments:
    """Rows grouped by target node: ``perm`` (n,) sorts them by target (stably), and
    ``offsets`` (N + 1,) bounds each node's group in that order (empty groups allowed)."""

    perm: Tensor
    offsets: Tensor

    @classmethod
    def of(cls, target: Tensor, num_nodes: int) -> _Segments:
        counts = torch.bincount(target, minlength=num_nodes)
        offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        return cls(torch.argsort(target, stable=True), offsets)

    def sum(self, rows: Tensor) -> Tensor:
        """(N, D) per-node sums of the contiguous (n, D) ``rows``, in row order within a node.

        ``embedding_bag`` sums its bags in parallel over nodes (fbgemm kernels on CPU), several
        times faster than ``index_add_``, which runs on one thread on CPU.
        """
        return F.embedding_bag(self.perm, rows, self.offsets, mode="sum", include_last_offset=True)


@dataclass(frozen=True)
class _ChunkIndex:
    """Index structures of one chunk of edges (rows ``rows`` of the edge list).

    The gather pairs and the segments by source and target are built on first use (once per
    batch, shared by the layers): the native loops need only ``src`` and ``dst``. A chunk is
    only used by one chunk worker at a time (static dealing), so building them is not shared.
    """

    rows: slice
    src: Tensor
    dst: Tensor
    num_nodes: int

    @classmethod
    def of(cls, src: Tensor, dst: Tensor, rows: slice, num_nodes: int) -> _ChunkIndex:
        # contiguous: the native loops read them
        return cls(rows, src[rows].contiguous(), dst[rows].contiguous(), num_nodes)

    @cached_property
    def pairs(self) -> tuple[Tensor, Tensor]:
        """(2n,) ``[N + v_0, u_0, N + v_1, u_1, ...]`` and (n,) ``[0, 2, 4, ...]``: gathering
        the pairs from a stacked (2N, D) table ``[X; Y]`` gives ``X_u + Y_v`` in one pass. The
        destination comes first in each pair: with sorted sources (the line graph's order) the
        gather is slower the other way round (the sum is the same either way)."""
        pairs = torch.stack([self.dst + self.num_nodes, self.src], 1).reshape(-1)
        return pairs, torch.arange(0, pairs.numel(), 2, device=pairs.device)

    @cached_property
    def by_src(self) -> _Segments:
        return _Segments.of(self.src, self.num_nodes)

    @cached_property
    def by_dst(self) -> _Segments:
        return _Segments.of(self.dst, self.num_nodes)

    def gather_sum(self, table: Tensor) -> Tensor:
        """(n, D) ``X_u + Y_v`` from ``table = [X; Y]`` (2N, D), as one fresh tensor."""
        pairs, offsets = self.pairs
        return F.embedding_bag(pairs, table, offsets, mode="sum")


class EdgeIndex:
    """An (2, E) ``edge_index`` with the kernel's per-chunk index structures, cached.

    The sort permutations and segment offsets cost a few index operations over the edges; a
    model that applies several convolutions to one graph (all ALIGNN layers share the bond graph
    and the line graph) wraps its ``edge_index`` once so they are built once per batch.
    """

    def __init__(self, edge_index: Tensor) -> None:
        self.edge_index = edge_index
        self._chunks: dict[tuple[int, int], list[_ChunkIndex]] = {}

    def chunks(self, num_nodes: int, rows: int) -> list[_ChunkIndex]:
        """The structures of the chunks of ``rows`` edges, for a graph of ``num_nodes`` nodes."""
        key = (num_nodes, rows)
        if key not in self._chunks:
            src, dst = self.edge_index[0], self.edge_index[1]
            _check_bounds(self.edge_index, num_nodes)
            self._chunks[key] = [
                _ChunkIndex.of(src, dst, sl, num_nodes)
                for sl, _ in row_chunks(self.edge_index.shape[1], rows)
            ]
        return self._chunks[key]


def _check_bounds(edge_index: Tensor, num_nodes: int) -> None:
    """Endpoints must be node numbers (the native loops do not check their reads)."""
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise IndexError(
            f"edge_index has endpoints outside [0, {num_nodes}): "
            f"min {int(edge_index.min())}, max {int(edge_index.max())}"
        )


def _in_chunk_order(shares: list[dict], key: str) -> list[Tensor]:
    """The per-chunk tensors ``share[key]`` (``{chunk number: tensor}``) of all shares, by chunk."""
    merged = {k: t for share in shares for k, t in share[key].items()}
    return [merged[k] for k in sorted(merged)]


def _accumulate(total: Tensor | None, part: Tensor) -> Tensor:
    """``part`` for the first chunk, ``total += part`` after."""
    return part if total is None else total.add_(part)


class EdgeGatedEdges(torch.autograd.Function):
    """The gated aggregation and the edge update ``y'`` of an edge-gated convolution.

    Inputs (shapes with N nodes, E edges, D output and I input features):
        node_proj: (N, 4D) node projections ``[A | C | B | U]``: src_gate (+ edge_gate
            bias), dst_update, dst_gate and src_update of the node features.
        y: (E, I) edge features.
        weight: (D, I) edge_gate weight (its bias is folded into ``A``).
        gamma, beta: (D,) affine parameters of the edge batch norm.
        index: the (2, E) edge endpoints as an :class:`EdgeIndex`.
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
        index: EdgeIndex,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        eps: float,
        residual: bool,
        chunk_rows: int,
        edges_out: bool,
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        num_nodes, num_edges, dim = node_proj.shape[0], y.shape[0], weight.shape[0]
        small = is_small(num_edges, dim, y.device) and is_small(num_nodes, dim, y.device)
        with OneThread(small) as threads:
            workers, rows = split_plan(num_edges, chunk_rows, small, y.device)
            chunks = index.chunks(num_nodes, rows)
            a_nodes, c_nodes, b_nodes = node_proj[:, : 3 * dim].split(dim, 1)
            # gathered in pairs (A_u + B_v) by the torch ops only: built on their first use
            ab_nodes = cache(lambda: torch.cat([a_nodes, b_nodes]))
            c_view, c_nodes = c_nodes, c_nodes.contiguous()
            u_nodes = node_proj[:, 3 * dim :]
            batch_stats = running_mean is None or running_var is None
            keep_gates = num_edges * dim <= SAVE_GATES_ELEMENTS
            matmul_threads = threads.all_threads if workers == 1 else nullcontext

            def gates(share: list[tuple[int, _ChunkIndex]]) -> dict:
                """m (kept), the gates and this share's sums over its chunks."""
                if native.usable(y, weight, c_nodes, rows=[node_proj]):
                    return native_gates(share)
                work = [y.new_empty(rows, dim) for _ in range(2)]
                out: dict = {"m": {}, "s": {}, "den": None, "num": None, "col": None}
                for k, ch in share:
                    n = ch.src.shape[0]
                    m_c = ch.gather_sum(ab_nodes())  # kept for backward: no edge-sized copy
                    with matmul_threads():
                        m_c.addmm_(y[ch.rows], weight.t())
                    out["m"][k] = m_c
                    if keep_gates:
                        s = out["s"][k] = torch.sigmoid(m_c)
                    else:
                        s = torch.sigmoid(m_c, out=work[0][:n])
                    out["den"] = _accumulate(out["den"], ch.by_dst.sum(s))
                    msg = torch.index_select(c_nodes, 0, ch.src, out=work[1][:n]).mul_(s)
                    out["num"] = _accumulate(out["num"], ch.by_dst.sum(msg))
                    if batch_stats:
                        out["col"] = _accumulate(out["col"], m_c.sum(0).double())
                return out

            def native_gates(share: list[tuple[int, _ChunkIndex]]) -> dict:
                """As ``gates``, each chunk in one fused loop after its matmul; with batch
                moments, the loop also sums ``m - shift`` and its squares (no pass of their
                own)."""
                out: dict = {"m": {}, "s": {}}
                out["den"], out["num"] = y.new_zeros(num_nodes, dim), y.new_zeros(num_nodes, dim)
                if batch_stats:
                    out["col"], out["sq"] = (y.new_zeros(dim, dtype=torch.float64) for _ in "cs")
                for k, ch in share:
                    with matmul_threads():
                        m_c = torch.mm(y[ch.rows], weight.t())
                    out["m"][k] = m_c  # the gates are recomputed in backward (as fast)
                    native.gates_forward(
                        ch.src, ch.dst, a_nodes, b_nodes, c_view, m_c, out["den"], out["num"],
                        shift, out.get("col"), out.get("sq"),
                    )  # fmt: skip
                return out

            # with batch moments, the native loops sum them about the first edge's m
            shift = None
            if batch_stats and chunks:
                first = chunks[0]
                shift = (a_nodes[first.src[0]] + b_nodes[first.dst[0]]) + y[0] @ weight.t()

            shares = split_map(gates, list(enumerate(chunks)), workers)
            m_parts, s_parts = _in_chunk_order(shares, "m"), _in_chunk_order(shares, "s")
            den = reduce_in_order([sh["den"] for sh in shares])
            num = reduce_in_order([sh["num"] for sh in shares])
            if den is None:  # no edges
                den, num = y.new_zeros(num_nodes, dim), y.new_zeros(num_nodes, dim)
            den.add_(GATE_EPS)
            h = num.div_(den)
            x_pre = u_nodes + h

            slices = [ch.rows for ch in chunks]
            if batch_stats and shares and "sq" in shares[0]:  # from the native gates loop
                col = reduce_in_order([sh["col"] for sh in shares])
                sq = reduce_in_order([sh["sq"] for sh in shares])
                mean, var = shifted_moments(col, sq, shift, num_edges)
            elif batch_stats:  # the column sums came with the gates (m still in cache)
                mean = (reduce_in_order([sh["col"] for sh in shares]) / num_edges).to(y.dtype)
                var = centered_variance(m_parts, mean, num_edges, rows, workers)
            else:
                mean, var = running_mean, running_var
            invstd = torch.rsqrt(var + eps)
            scale = gamma * invstd
            shift = beta - mean * scale
            y_out = None
            if edges_out:
                residual_in = y if residual else None
                y_out = y.new_empty(num_edges, dim)
                normalize_silu(m_parts, slices, scale, shift, y_out, residual_in, workers)

            ctx.save_for_backward(
                c_nodes, den, h, y, weight, mean, invstd, scale, shift, *m_parts, *s_parts
            )
            ctx.batch_stats, ctx.residual, ctx.rows, ctx.chunks = (
                batch_stats,
                residual,
                rows,
                chunks,
            )
            ctx.workers, ctx.small = workers, small
            ctx.set_materialize_grads(False)
            mean, var = mean.detach().clone(), var.detach().clone()
            ctx.mark_non_differentiable(mean, var)
            return x_pre, y_out, mean, var

    @staticmethod
    def backward(ctx, g_h: Tensor | None, g_out: Tensor | None, *_):
        c_nodes, den, h, y, weight, mean, invstd, scale, shift, *parts = ctx.saved_tensors
        chunks, needs, workers = ctx.chunks, ctx.needs_input_grad, ctx.workers
        m_parts, s_parts = parts[: len(chunks)], parts[len(chunks) :]
        num_nodes, num_edges, dim, rows = c_nodes.shape[0], y.shape[0], weight.shape[0], ctx.rows
        with OneThread(ctx.small) as threads:
            matmul_threads = threads.all_threads if workers == 1 else nullcontext
            g_y = torch.empty_like(y) if needs[1] else None
            indexed = list(enumerate(zip(chunks, m_parts, strict=True)))

            g_gamma = g_beta = g_z_all = a = b = None
            if g_out is not None:
                g_out = g_out.contiguous()  # e.g. the expanded gradient of a sum
                # g_z = g_out * silu'(z) is kept edge-sized, in g_y's memory when it fits there
                g_z_all = (
                    g_y if g_y is not None and g_y.shape[1] == dim else g_out.new_empty(g_out.shape)
                )
                g_gamma, g_beta = affine_grads(
                    m_parts, [ch.rows for ch in chunks], g_out, mean, invstd, scale, shift,
                    rows, g_z_all, workers,
                )  # fmt: skip
                # train-mode BN input gradient: scale * g_z + a * m + b (see module docstring)
                a, b = input_grad_terms(scale, invstd, mean, g_gamma, g_beta, num_edges)

            residual_grad = ctx.residual and g_out is not None and g_y is not None
            if g_h is None:
                g_h = den.new_zeros(num_nodes, dim)
            g_num = g_h / den
            # dL/ds_e = g_num_v * C_u + g_den_v with g_den = -g_num * h: g_num_v * (C_u - h_v)
            c_minus_h = cache(lambda: torch.cat([c_nodes, -h]))  # torch ops only

            def native_gradients(share: list) -> dict:
                """As ``gradients``, each chunk's elementwise and index work in one fused loop."""
                g_m_work = y.new_empty(rows, dim)
                # sums into column blocks of one (N, 4D) table: no concatenation after
                out = {"acb": y.new_zeros(num_nodes, 4 * dim)}
                g_a, g_c, g_b = out["acb"][:, : 3 * dim].split(dim, 1)
                out["w"] = torch.zeros_like(weight) if needs[2] else None
                batch_terms = g_out is not None and ctx.batch_stats
                # the loop leaves the residual gradient g_out where it read g_z (g_y's rows)
                residual_in_g_y = residual_grad and g_z_all is g_y
                for k, (ch, m_c) in share:
                    sl, n = ch.rows, ch.src.shape[0]
                    g_m = g_m_work[:n]
                    native.gates_backward(
                        ch.src, ch.dst, g_num, c_nodes, h, m_c, s_parts[k] if s_parts else None,
                        g_z_all[sl] if g_out is not None else None, scale,
                        a if batch_terms else None, b if batch_terms else None,
                        g_m, g_a, g_b, g_c, g_out[sl] if residual_in_g_y else None,
                    )  # fmt: skip
                    weight_grads(out, sl, g_m, residual_in_g_y)
                return out

            def weight_grads(out: dict, sl: slice, g_m: Tensor, residual_in_g_y: bool) -> None:
                """dL/dy of rows ``sl`` (over g_z, already used) and dL/dW += g_m^T y.
                ``residual_in_g_y``: g_y's rows already hold the residual gradient g_out."""
                with matmul_threads():
                    if g_y is not None:
                        if residual_in_g_y:
                            g_y[sl].addmm_(g_m, weight)
                        elif residual_grad:
                            torch.addmm(g_out[sl], g_m, weight, out=g_y[sl])
                        else:
                            torch.mm(g_m, weight, out=g_y[sl])
                    if out["w"] is not None:
                        out["w"].addmm_(g_m.t(), y[sl])

            def gradients(share: list) -> dict:
                """This share's sums of dL/dA, dL/dC, dL/dB, dL/dW; writes its rows of dL/dy."""
                native_ok = g_out is None or native.usable(g_z_all, g_out)
                if native_ok and native.usable(g_num, c_nodes, h, y, scale):
                    return native_gradients(share)
                # contiguous chunk workspaces: embedding_bag from a strided source is much slower
                work = [y.new_empty(rows, dim) for _ in range(2)]
                out: dict = {"a": None, "c": None, "b": None, "w": None}
                if needs[2]:
                    out["w"] = torch.zeros_like(weight)
                for k, (ch, m_c) in share:
                    sl, n = ch.rows, ch.src.shape[0]
                    g_num_v = torch.index_select(g_num, 0, ch.dst, out=work[0][:n])
                    g_s = ch.gather_sum(c_minus_h()).mul_(g_num_v)
                    sig = s_parts[k] if s_parts else torch.sigmoid(m_c, out=work[1][:n])
                    g_c_e = g_num_v.mul_(sig)  # dL/dC_u contributions: g_num_v * s_e
                    g_m = _sigmoid_backward(g_s, sig, grad_input=g_s)
                    if g_out is not None:
                        g_m.addcmul_(g_z_all[sl], scale)
                        if ctx.batch_stats:
                            g_m.addcmul_(m_c, a).add_(b)
                    if needs[0]:
                        out["a"] = _accumulate(out["a"], ch.by_src.sum(g_m))
                        out["c"] = _accumulate(out["c"], ch.by_src.sum(g_c_e))
                        out["b"] = _accumulate(out["b"], ch.by_dst.sum(g_m))
                    weight_grads(out, sl, g_m, False)
                return out

            shares = split_map(gradients, indexed, workers)
            g_w = reduce_in_order([sh["w"] for sh in shares])
            if needs[2] and g_w is None:  # no edges
                g_w = torch.zeros_like(weight)
            g_node_proj = _node_gradients(shares, g_h) if needs[0] else None
            g_gamma = g_gamma if needs[3] else None
            g_beta = g_beta if needs[4] else None
            return g_node_proj, g_y, g_w, g_gamma, g_beta, *([None] * 7)


def _node_gradients(shares: list[dict], g_h: Tensor) -> Tensor:
    """(N, 4D) ``[g_A | g_C | g_B | g_h]`` from the shares' partial sums (native loops: one
    (N, 4D) table each, ``"acb"``; torch ops: three (N, D) sums)."""
    num_nodes, dim = g_h.shape
    if shares and "acb" in shares[0]:
        table = reduce_in_order([sh["acb"] for sh in shares])
        table[:, 3 * dim :] = g_h
        return table
    g_a, g_c, g_b = (reduce_in_order([sh[k] for sh in shares]) for k in "acb")
    if g_a is None:  # no edges
        g_a, g_c, g_b = (g_h.new_zeros(num_nodes, dim) for _ in range(3))
    return torch.cat([g_a, g_c, g_b, g_h], dim=1)


def edge_gated_edges(
    node_proj: Tensor,
    y: Tensor,
    weight: Tensor,
    gamma: Tensor,
    beta: Tensor,
    edge_index: Tensor | EdgeIndex,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    eps: float,
    residual: bool,
    edges_out: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """Apply :class:`EdgeGatedEdges`; returns ``(x_pre, y', mean, var)`` (see its docstring).

    ``edge_index`` may be a (2, E) tensor or an :class:`EdgeIndex` (reused across calls).
    """
    num_edges, dim = y.shape[0], weight.shape[0]
    if running_mean is None and num_edges < 2:
        raise ValueError(
            f"Expected more than 1 edge to compute batch-norm statistics, got {num_edges}"
        )
    chunk_rows = max(1, CHUNK_ELEMENTS // dim) if y.device.type == "cpu" else max(1, num_edges)
    index = edge_index if isinstance(edge_index, EdgeIndex) else EdgeIndex(edge_index)
    return EdgeGatedEdges.apply(
        node_proj,
        y,
        weight,
        gamma,
        beta,
        index,
        running_mean,
        running_var,
        eps,
        residual,
        chunk_rows,
        edges_out,
    )
