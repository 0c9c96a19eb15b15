"""Chunked batch norm + SiLU on CPU: a fused ``silu(BatchNorm(W x + b))`` (``MLPLayer``) and
``silu(BatchNorm(m)) (+ residual)`` (the node update of ``EdgeGatedGraphConv``).

Why: ``nn.BatchNorm1d`` on a 2-D (rows, features) input runs PyTorch's per-channel CPU kernels,
which stride through memory by the row length; on the ~10^4-10^5 bond-pair rows of a line graph
its forward and backward each cost several elementwise passes' worth of time, and plain
autograd keeps three (rows, features) tensors per layer. Here the moments, the normalization
and the SiLU (and their gradients) are a few row-contiguous passes over chunks of rows, with
one saved tensor (the pre-activation ``m``). The same helpers serve the edge batch norm of
:mod:`tlsearch.model.kernels.edge_gated`, whose ``m`` is kept in per-chunk parts.

Batch norm in training mode, per feature (``E`` rows)::

    x_hat = (m - mean) * invstd,   z = gamma * x_hat + beta = m * scale + shift,   out = silu(z)
    g_z = g_out * silu'(z),   g_beta = sum g_z,   g_gamma = sum g_z * x_hat
    g_m = scale * g_z + a * m + b,   a = -scale * invstd * g_gamma / E,
                                     b = -scale * g_beta / E - a * mean

(in eval mode ``mean``/``var`` are the running moments and ``g_m = scale * g_z``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from tlsearch.model.kernels import native
from tlsearch.model.kernels.chunk_workers import reduce_in_order, split_map

#: Elements of one (rows, features) chunk workspace on CPU: 2**21 floats = 8 MB, i.e.
#: 8192 rows of 256 features, so the few chunk-sized tensors a chunk's passes touch stay in a
#: 32 MB L3 cache. Every op is an OpenMP region ending in a barrier, so much smaller chunks
#: lose when other processes compete for the cores (each barrier waits for a descheduled
#: thread). Chosen by ``tlsearch bench kernels`` (measurements: bench/README.md). On GPUs the
#: whole set is one chunk.
CHUNK_ELEMENTS = 1 << 21

#: Row sets of at most this many elements (4096 rows of 256 features) run their elementwise and
#: index ops on one thread, see :class:`OneThread`.
SERIAL_ELEMENTS = 1 << 20

#: Chunk loops over large row sets may run on chunk workers (:func:`split_plan`); False keeps
#: every op of a loop on all threads in turn (measurements: bench/README.md).
PARALLEL = True

_silu_backward = torch.ops.aten.silu_backward.grad_input  # g * silu'(z), into grad_input


class OneThread:
    """Context: torch ops inside run on one thread when ``active`` (and more than one is set);
    :meth:`all_threads` gives a block (a matmul) the caller's thread count back.

    Why: shared machines run with ``OMP_WAIT_POLICY=PASSIVE``, so OpenMP workers sleep between
    parallel regions and every region pays a wake-up. On small graphs (a bond graph's ~2k
    edges, its ~150 atoms) that is most of an elementwise op's time, while setting the thread
    count costs next to nothing; matmuls keep the threads, where they still gain (measurements:
    bench/README.md).
    """

    def __init__(self, active: bool) -> None:
        self.threads = torch.get_num_threads()
        self.active = active and self.threads > 1

    def __enter__(self) -> OneThread:
        if self.active:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            torch.set_num_threads(self.threads)

    @contextmanager
    def all_threads(self) -> Iterator[None]:
        """Within the context, run this block on the caller's thread count."""
        if self.active:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            if self.active:
                torch.set_num_threads(1)


def is_small(rows: int, features: int, device: torch.device) -> bool:
    """Whether (rows, features) tensors on ``device`` are cheap enough for one thread."""
    return device.type == "cpu" and rows * features <= SERIAL_ELEMENTS


def chunk_rows(rows: int, features: int, device: torch.device) -> int:
    """Rows per chunk for (rows, features) tensors on ``device`` (all of them off CPU)."""
    if device.type != "cpu":
        return max(1, rows)
    return max(1, min(CHUNK_ELEMENTS // max(1, features), rows))


def row_chunks(total: int, rows: int) -> Iterator[tuple[slice, int]]:
    """``(rows slice, rows in it)`` covering ``range(total)``."""
    for start in range(0, total, rows):
        stop = min(start + rows, total)
        yield slice(start, stop), stop - start


def split_plan(total: int, max_rows: int, small: bool, device: torch.device) -> tuple[int, int]:
    """``(workers, rows per chunk)`` for a chunk loop over ``total`` rows.

    Large row sets on a multi-threaded CPU split their chunk loops over
    ``torch.get_num_threads()`` chunk workers (:mod:`~.chunk_workers`), in chunks
    of at most ``max_rows`` rows and the same number of chunks per worker; otherwise one worker
    walks chunks of ``max_rows`` rows with every op on all threads.
    """
    rows = max(1, min(max_rows, total))
    threads = torch.get_num_threads()
    if small or device.type != "cpu" or threads < 2 or total < 2 * threads or not PARALLEL:
        return 1, rows
    per_worker = -(-total // (threads * rows))  # chunks per worker
    return threads, -(-total // (threads * per_worker))


def column_sums(parts: Sequence[Tensor], workers: int = 1) -> Tensor:
    """Float64 column sums of the rows of all ``parts`` (summed per part, then in order)."""

    def share_sums(share: list[Tensor]) -> Tensor | None:
        return reduce_in_order([part.sum(0).double() for part in share])

    return reduce_in_order(split_map(share_sums, parts, workers))


def centered_variance(
    parts: Sequence[Tensor], mean: Tensor, count: int, rows: int, workers: int = 1
) -> Tensor:
    """Biased column variance of the rows of all ``parts`` (at most ``rows`` rows each) about
    ``mean``: from centered squares, not ``E[m^2] - mean^2``; sums in float64."""

    def squares(share: list[Tensor]) -> Tensor:
        total = mean.new_zeros(mean.shape, dtype=torch.float64)
        scratch = share[0].new_empty(rows, share[0].shape[1])
        for part in share:
            total += torch.sub(part, mean, out=scratch[: part.shape[0]]).square_().sum(0)
        return total

    return (reduce_in_order(split_map(squares, parts, workers)) / count).to(mean.dtype)


def shifted_moments(col: Tensor, sq: Tensor, shift: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """Column mean and biased variance from float64 sums of ``d = m - shift`` (``col``) and of
    ``d ** 2`` (``sq``) over ``count`` rows: ``mean = shift + E[d]``, ``var = E[d^2] - E[d]^2``.

    With ``shift`` one row of ``m``, ``d`` is of the order of the spread, not of the mean, so
    the subtraction loses little (float64 sums); this takes one pass over ``m`` instead of a
    pass for the mean and another for the centred squares."""
    mean_d = col / count
    var = (sq / count - mean_d * mean_d).clamp_min_(0.0)
    return (shift.double() + mean_d).to(shift.dtype), var.to(shift.dtype)


def batch_moments(
    parts: Sequence[Tensor], count: int, rows: int, workers: int = 1
) -> tuple[Tensor, Tensor]:
    """Column mean and biased variance of the rows of all ``parts``: one pass of the native
    loops about the first row (:func:`shifted_moments`), else two passes of torch ops."""
    shift = parts[0][0].clone()

    def share_moments(share: list[Tensor]) -> tuple[Tensor, Tensor] | None:
        if not native.usable(shift, *share):
            return None
        col, sq = (shift.new_zeros(shift.shape, dtype=torch.float64) for _ in range(2))
        for part in share:
            native.col_moments(part, shift, col, sq)
        return col, sq

    sums = split_map(share_moments, parts, workers)
    if all(s is not None for s in sums):
        col = reduce_in_order([s[0] for s in sums])
        sq = reduce_in_order([s[1] for s in sums])
        return shifted_moments(col, sq, shift, count)
    mean = (column_sums(parts, workers) / count).to(parts[0].dtype)
    return mean, centered_variance(parts, mean, count, rows, workers)


def normalize_silu(
    parts: Sequence[Tensor],
    slices: Sequence[slice],
    scale: Tensor,
    shift: Tensor,
    out: Tensor,
    residual: Tensor | None = None,
    workers: int = 1,
) -> Tensor:
    """``out[sl] = silu(part * scale + shift) (+ residual[sl])`` for every part; returns ``out``."""

    def normalize(share: list[tuple[Tensor, slice]]) -> None:
        res = [None if residual is None else residual[sl] for _, sl in share]
        if native.usable(scale, shift, *(p for p, _ in share), *(out[sl] for _, sl in share),
                         *res):  # fmt: skip
            for (part, sl), r in zip(share, res, strict=True):
                native.bn_silu(part, scale, shift, r, out[sl])
            return
        for part, sl in share:
            o = torch.addcmul(shift, part, scale, out=out[sl])
            F.silu(o, inplace=True)
            if residual is not None:
                o += residual[sl]

    split_map(normalize, list(zip(parts, slices, strict=True)), workers)
    return out


def affine_grads(
    parts: Sequence[Tensor],
    slices: Sequence[slice],
    g_out: Tensor,
    mean: Tensor,
    invstd: Tensor,
    scale: Tensor,
    shift: Tensor,
    rows: int,
    g_z_out: Tensor,
    workers: int = 1,
) -> tuple[Tensor, Tensor]:
    """``(g_gamma, g_beta)``: sums over rows of ``g_z * x_hat`` and ``g_z``.

    ``z = m * scale + shift`` is the SiLU input and ``g_z = g_out * silu'(z)``; ``g_z`` is
    written to ``g_z_out`` (rows, D) for the caller's second pass. ``rows``: the most rows of
    a part.
    """

    def sums(share: list[tuple[Tensor, slice]]) -> tuple[Tensor, Tensor]:
        g_gamma = mean.new_zeros(mean.shape, dtype=torch.float64)
        g_beta = mean.new_zeros(mean.shape, dtype=torch.float64)
        views = [t for part, sl in share for t in (part, g_out[sl], g_z_out[sl])]
        if native.usable(mean, scale, shift, *views):
            for part, sl in share:
                native.bn_silu_grad_sums(
                    part, g_out[sl], scale, shift, mean, g_z_out[sl], g_gamma, g_beta
                )
            return g_gamma, g_beta
        scratch = share[0][0].new_empty(rows, mean.shape[0])
        for part, sl in share:
            n = part.shape[0]
            z = torch.addcmul(shift, part, scale, out=scratch[:n])
            g_z = _silu_backward(g_out[sl], z, grad_input=g_z_out[sl])
            g_beta += g_z.sum(0)
            g_gamma += torch.sub(part, mean, out=scratch[:n]).mul_(g_z).sum(0)
        return g_gamma, g_beta

    shares = split_map(sums, list(zip(parts, slices, strict=True)), workers)
    g_gamma = reduce_in_order([g for g, _ in shares])
    g_beta = reduce_in_order([g for _, g in shares])
    return (g_gamma * invstd).to(mean.dtype), g_beta.to(mean.dtype)


def input_grad_terms(
    scale: Tensor, invstd: Tensor, mean: Tensor, g_gamma: Tensor, g_beta: Tensor, count: int
) -> tuple[Tensor, Tensor]:
    """``(a, b)`` of the train-mode input gradient ``g_m = scale * g_z + a * m + b``."""
    a = -scale * invstd * g_gamma / count
    b = -scale * g_beta / count - a * mean
    return a, b


@dataclass(frozen=True)
class _Plan:
    """How the rows of one batch norm + SiLU were walked (kept for its backward)."""

    small: bool
    batch_stats: bool
    step: int
    workers: int


def _normalize(
    m: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    eps: float,
    residual: Tensor | None,
    small: bool,
) -> tuple[Tensor, list[Tensor], _Plan]:
    """``silu(BatchNorm(m)) (+ residual)``; returns it, the tensors its backward needs
    ``[m, mean, var, invstd, scale, shift]`` and the plan. Batch moments when no running ones."""
    rows, dim = m.shape
    workers, step = split_plan(rows, chunk_rows(rows, dim, m.device), small, m.device)
    slices = [sl for sl, _ in row_chunks(rows, step)]
    parts = [m[sl] for sl in slices]
    batch_stats = running_mean is None or running_var is None
    if batch_stats:
        mean, var = batch_moments(parts, rows, step, workers)
    else:
        mean, var = running_mean, running_var
    invstd = torch.rsqrt(var + eps)
    scale = gamma * invstd
    shift = beta - mean * scale
    out = normalize_silu(parts, slices, scale, shift, torch.empty_like(m), residual, workers)
    return out, [m, mean, var, invstd, scale, shift], _Plan(small, batch_stats, step, workers)


def _normalize_backward(
    saved: Sequence[Tensor], plan: _Plan, g_out: Tensor, input_sums: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """``(g_m, g_gamma, g_beta, g_m's column sums or None)`` of :func:`_normalize` (``saved``:
    its tensors); the sums (``input_sums``) come with the input-gradient pass, not another."""
    m, mean, _, invstd, scale, shift = saved
    rows = m.shape[0]
    slices = [sl for sl, _ in row_chunks(rows, plan.step)]
    parts = [m[sl] for sl in slices]
    g_m = torch.empty_like(m)  # holds g_z, then dL/dm in place
    g_out = g_out.contiguous()
    g_gamma, g_beta = affine_grads(
        parts, slices, g_out, mean, invstd, scale, shift, plan.step, g_m, plan.workers
    )
    if not plan.batch_stats:  # g_m = scale * g_z: its column sums are scale * g_beta
        return g_m.mul_(scale), g_gamma, g_beta, scale * g_beta if input_sums else None
    a, b = input_grad_terms(scale, invstd, mean, g_gamma, g_beta, rows)

    def input_grads(share: list[tuple[slice, Tensor]]) -> Tensor | None:
        if native.usable(scale, a, b, *(t for sl, p in share for t in (g_m[sl], p))):
            col = m.new_zeros(m.shape[1], dtype=torch.float64) if input_sums else None
            for sl, part in share:
                native.bn_input_grad(g_m[sl], part, scale, a, b, col)
            return col
        for sl, part in share:
            g_m[sl].mul_(scale).addcmul_(part, a).add_(b)
        return reduce_in_order([g_m[sl].sum(0).double() for sl, _ in share]) if input_sums else None

    sums = split_map(input_grads, list(zip(slices, parts, strict=True)), plan.workers)
    g_sums = reduce_in_order(sums)
    return g_m, g_gamma, g_beta, None if g_sums is None else g_sums.to(m.dtype)


def _moments_out(ctx, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """The (mean, biased variance) outputs: detached copies, marked non-differentiable."""
    mean, var = mean.detach().clone(), var.detach().clone()
    ctx.mark_non_differentiable(mean, var)
    return mean, var


class BatchNormSiLU(torch.autograd.Function):
    """``silu(BatchNorm(m)) (+ residual)`` with the batch norm in training (batch moments) or
    eval (running moments) mode: the node update of an edge-gated convolution.

    Inputs: m (M, D), gamma, beta (D,), running_mean and running_var (D,) or None for batch
    moments, eps, residual (M, D) or None. Outputs: (M, D) and the (D,) mean and biased variance
    used (non-differentiable; the caller updates running stats).
    """

    @staticmethod
    def forward(ctx, m, gamma, beta, running_mean, running_var, eps, residual):
        small = is_small(m.shape[0], m.shape[1], m.device)
        with OneThread(small):
            out, saved, ctx.plan = _normalize(
                m, gamma, beta, running_mean, running_var, eps, residual, small
            )
        ctx.save_for_backward(*saved)
        return (out, *_moments_out(ctx, saved[1], saved[2]))

    @staticmethod
    def backward(ctx, g_out: Tensor, *_):
        with OneThread(ctx.plan.small):
            g_m, g_gamma, g_beta, _ = _normalize_backward(ctx.saved_tensors, ctx.plan, g_out)
        needs = ctx.needs_input_grad
        return (
            g_m if needs[0] else None,
            g_gamma if needs[1] else None,
            g_beta if needs[2] else None,
            None,
            None,
            None,
            g_out if needs[6] else None,
        )


class LinearBNSiLU(torch.autograd.Function):
    """``silu(BatchNorm(x W^T + bias))`` with the batch norm in training (batch moments) or
    eval (running moments) mode.

    Inputs: x (M, I), weight (D, I), bias (D,), gamma, beta (D,), running_mean and
    running_var (D,) or None for batch moments, eps. Outputs: (M, D) and the (D,) mean and
    biased variance used (non-differentiable; the caller updates running stats).
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        weight: Tensor,
        bias: Tensor,
        gamma: Tensor,
        beta: Tensor,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        small = is_small(x.shape[0], weight.shape[0], x.device)
        with OneThread(small) as threads:
            # the bias is folded into the normalization (m - mean is the same without it),
            # which saves the pass that broadcasts it into the matmul's output
            with threads.all_threads():
                m = torch.mm(x, weight.t())
            batch_stats = running_mean is None or running_var is None
            frame_mean = None if batch_stats else running_mean - bias
            out, saved, ctx.plan = _normalize(
                m, gamma, beta, frame_mean, running_var, eps, None, small
            )
        ctx.save_for_backward(x, weight, *saved)
        mean = saved[1] + bias if batch_stats else running_mean  # of m + bias
        return (out, *_moments_out(ctx, mean, saved[2]))

    @staticmethod
    def backward(ctx, g_out: Tensor, *_):
        x, weight, *saved = ctx.saved_tensors
        needs = ctx.needs_input_grad
        with OneThread(ctx.plan.small) as threads:
            g_m, g_gamma, g_beta, g_bias = _normalize_backward(saved, ctx.plan, g_out, needs[2])
            with threads.all_threads():
                g_x = g_m @ weight if needs[0] else None
                g_w = g_m.t() @ x if needs[1] else None
        g_gamma = g_gamma if needs[3] else None
        g_beta = g_beta if needs[4] else None
        return g_x, g_w, g_bias, g_gamma, g_beta, None, None, None


def _check_rows(x: Tensor, bn: torch.nn.BatchNorm1d) -> bool:
    """Whether ``bn`` uses batch moments here; they need more than one row (as torch's)."""
    batch_stats = bn.training or bn.running_mean is None
    if batch_stats and x.shape[0] < 2:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {x.shape}"
        )
    return batch_stats


def linear_bn_silu(
    x: Tensor, linear: torch.nn.Linear, bn: torch.nn.BatchNorm1d
) -> tuple[Tensor, Tensor, Tensor]:
    """Apply :class:`LinearBNSiLU` with ``linear``'s and ``bn``'s parameters; returns
    ``(out, mean, var)``. Batch moments when ``bn`` is training or tracks no running stats."""
    batch_stats = _check_rows(x, bn)
    return LinearBNSiLU.apply(
        x,
        linear.weight,
        linear.bias,
        bn.weight,
        bn.bias,
        None if batch_stats else bn.running_mean,
        None if batch_stats else bn.running_var,
        bn.eps,
    )


def batch_norm_silu(
    m: Tensor, bn: torch.nn.BatchNorm1d, residual: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Apply :class:`BatchNormSiLU` with ``bn``'s parameters: ``silu(bn(m)) (+ residual)``;
    returns ``(out, mean, var)`` as :func:`linear_bn_silu`."""
    batch_stats = _check_rows(m, bn)
    return BatchNormSiLU.apply(
        m,
        bn.weight,
        bn.bias,
        None if batch_stats else bn.running_mean,
        None if batch_stats else bn.running_var,
        bn.eps,
        residual,
    )
