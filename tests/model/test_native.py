"""The native CPU loops against the torch path they replace (float32), their build and fallback."""

from __future__ import annotations

import copy
import ctypes
import logging

import pytest
import torch

import tlsearch.model.kernels.bn_silu as bn_silu
import tlsearch.model.kernels.edge_gated as kernel
from tests.model.conftest import concat_batches, random_graph
from tests.model.test_layers import randomize_batchnorms
from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import ALIGNNConfig
from tlsearch.model.kernels import native
from tlsearch.model.layers import EdgeGatedGraphConv, MLPLayer

pytestmark = pytest.mark.skipif(
    native.library() is None, reason="no C compiler: the native loops cannot be built here"
)


@pytest.fixture
def use_native(monkeypatch):
    """``use_native(flag)``: turn the native loops on or off for what follows."""

    def switch(on: bool) -> None:
        monkeypatch.setenv("TLSEARCH_NATIVE", "1" if on else "0")
        native.reset()

    yield switch
    monkeypatch.delenv("TLSEARCH_NATIVE")
    native.reset()


def _run(module, use_native, on: bool, forward):
    """Outputs, input and parameter gradients, and buffers of ``forward(copy of module)``."""
    use_native(on)
    module = copy.deepcopy(module)
    outs, inputs = forward(module)
    loss = sum((o * torch.linspace(-1, 1, o.numel()).reshape(o.shape)).sum() for o in outs)
    loss.backward()
    grads = [t.grad for t in inputs] + [
        torch.zeros_like(p) if p.grad is None else p.grad for p in module.parameters()
    ]
    return [*outs, *grads, *module.buffers()]


def _assert_same(got, want, rtol=1e-4, atol=1e-4):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        g, w = g.detach(), w.detach()
        scale = max(1.0, float(w.abs().max())) if w.is_floating_point() and w.numel() else 1.0
        torch.testing.assert_close(
            g, w, rtol=rtol, atol=atol * scale, msg=lambda m, k=k: f"tensor {k}: {m}"
        )


def _graph(num_nodes: int, num_edges: int, dim: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    src = torch.sort(torch.randint(0, num_nodes, (num_edges,), generator=gen))[0]
    dst = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    dst[:2] = src[:2]  # self-loops
    x = torch.randn(num_nodes, dim, generator=gen)
    y = torch.randn(num_edges, dim, generator=gen)
    return torch.stack([src, dst]), x, y


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("edges_out", [True, False], ids=["x-and-y", "x-only"])
def test_edge_gated_conv_native_equals_torch(
    use_native, chunk_workers, monkeypatch, training: bool, edges_out: bool
):
    """Odd sizes (37 features, 301 edges in chunks of 64: a partial last chunk, a node with no
    incoming edge): outputs, gradients and running moments as the torch ops give them."""
    dim = 37
    monkeypatch.setattr(kernel, "CHUNK_ELEMENTS", 64 * dim)
    edge_index, x, y = _graph(41, 301, dim, seed=3)
    edge_index[1][edge_index[1] == 40] = 39
    torch.manual_seed(0)
    conv = EdgeGatedGraphConv(dim, dim).train(training)
    randomize_batchnorms(conv)

    def forward(conv):
        xx, yy = x.clone().requires_grad_(), y.clone().requires_grad_()
        x_out, y_out = conv(edge_index, xx, yy, edges_out=edges_out)
        return [x_out] + ([y_out] if edges_out else []), [xx, yy]

    _assert_same(_run(conv, use_native, True, forward), _run(conv, use_native, False, forward))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_mlp_layer_native_equals_torch(use_native, chunk_workers, monkeypatch, training: bool):
    monkeypatch.setattr(bn_silu, "CHUNK_ELEMENTS", 50 * 19)
    torch.manual_seed(1)
    layer = MLPLayer(7, 19).train(training)
    randomize_batchnorms(layer)
    x = torch.randn(523, 7)

    def forward(layer):
        xx = x.clone().requires_grad_()
        return [layer(xx)], [xx]

    _assert_same(_run(layer, use_native, True, forward), _run(layer, use_native, False, forward))


def test_alignn_training_step_native_equals_torch(use_native, chunk_workers):
    """The paper's widths on crystal-like graphs (1-atom and 30-atom cells in one batch)."""
    batch = concat_batches(
        [random_graph(1, 12, seed=5), random_graph(30, 12, seed=6), random_graph(7, 12, seed=7)]
    )
    torch.manual_seed(2)
    model = ALIGNN(ALIGNNConfig()).train()

    def forward(model):
        return [model(batch)], []

    _assert_same(_run(model, use_native, True, forward), _run(model, use_native, False, forward))


def test_native_loops_run_where_expected(use_native, monkeypatch):
    """On one thread with float32 the conv calls the loops; with float64 it does not."""
    use_native(True)
    calls = []
    for name in ("gates_forward", "gates_backward", "bn_silu", "bn_silu_grad_sums"):
        real = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    edge_index, x, y = _graph(10, 40, 8, seed=0)
    conv = EdgeGatedGraphConv(8, 8)
    x_out, y_out = conv(edge_index, x.requires_grad_(), y)
    (x_out.sum() + y_out.sum()).backward()
    assert set(calls) == {"gates_forward", "gates_backward", "bn_silu", "bn_silu_grad_sums"}
    calls.clear()
    conv.double()(edge_index, x.double(), y.double())
    assert calls == []


def test_out_of_range_edge_index_is_an_error_not_a_crash(use_native):
    use_native(True)
    edge_index, x, y = _graph(10, 40, 8, seed=0)
    edge_index[1, 5] = 10
    with pytest.raises(IndexError, match=r"outside \[0, 10\).*max 10"):
        EdgeGatedGraphConv(8, 8)(edge_index, x, y)


def test_without_a_compiler_the_torch_path_runs_with_one_warning(
    use_native, monkeypatch, tmp_path, caplog
):
    edge_index, x, y = _graph(10, 40, 8, seed=0)
    conv = EdgeGatedGraphConv(8, 8)
    use_native(False)
    want = conv(edge_index, x, y)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("TLSEARCH_NATIVE_CACHE", str(tmp_path / "cache"))
    use_native(True)
    with caplog.at_level(logging.WARNING, logger="tlsearch.model.kernels.native"):
        got = conv(edge_index, x, y)
        conv(edge_index, x, y)
    assert native.library() is None
    warnings = [r for r in caplog.records if "native CPU loops unavailable" in r.message]
    assert len(warnings) == 1 and "no-such-compiler" in warnings[0].message
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_build_is_cached_per_source_and_cpu(use_native, monkeypatch, tmp_path):
    monkeypatch.setenv("TLSEARCH_NATIVE_CACHE", str(tmp_path))
    use_native(True)
    lib = native.library()
    assert isinstance(lib, ctypes.CDLL)
    built = sorted(p.name for p in tmp_path.glob("kernels-*.so"))
    assert len(built) == 1
    native.reset()
    assert native.library() is not None  # loaded from the cache, not rebuilt
    assert sorted(p.name for p in tmp_path.glob("kernels-*.so")) == built
    source, flags, cc = native.SOURCE.read_bytes(), native.flag_sets()[0], "cc"
    key = native.library_key(source, flags, cc)
    assert native.library_key(source + b"\n", flags, cc) != key
    monkeypatch.setattr(native, "_cpu_identity", lambda: "flags: sse2")
    assert native.library_key(source, flags, cc) != key


def test_one_pass_batch_moments_are_accurate_far_from_zero(use_native, chunk_workers, monkeypatch):
    """The native loops sum the batch moments in one pass about a row of m (the node update's
    and the MLP layers' batch norm, and inside the gates loop for the edge batch norm): on
    rows whose mean is 2000 times their spread they equal float64's within float32's
    resolution, in several chunks, in turn or on chunk workers."""
    use_native(True)
    calls = []
    for name in ("col_moments", "gates_forward"):
        real = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    gen = torch.Generator().manual_seed(0)
    m = (torch.randn(3001, 37, generator=gen, dtype=torch.float64) * 0.5 + 1000).float()
    mean, var = bn_silu.batch_moments(list(m.split(1000)), m.shape[0], 1000, chunk_workers)
    assert calls.count("col_moments") == 4
    torch.testing.assert_close(mean.double(), m.double().mean(0), rtol=1e-7, atol=0)
    torch.testing.assert_close(var.double(), m.double().var(0, unbiased=False), rtol=1e-5, atol=0)

    # the edge batch norm: m = A_u + B_v + y W^T with A far from zero
    dim = 37
    monkeypatch.setattr(kernel, "CHUNK_ELEMENTS", 64 * dim)
    edge_index, _, y = _graph(41, 301, dim, seed=3)
    node_proj = torch.randn(41, 4 * dim, generator=gen)
    node_proj[:, :dim] += 1000
    weight = torch.randn(dim, dim, generator=gen) * 0.1
    ones = torch.ones(dim)
    _, _, mean, var = kernel.edge_gated_edges(
        node_proj, y, weight, ones, ones * 0, edge_index, None, None, 1e-5, True
    )
    assert "gates_forward" in calls
    src, dst = edge_index.long()
    a, b = node_proj.double()[:, :dim], node_proj.double()[:, 2 * dim : 3 * dim]
    want = a[src] + b[dst] + y.double() @ weight.double().t()
    torch.testing.assert_close(mean.double(), want.mean(0), rtol=1e-7, atol=0)
    torch.testing.assert_close(var.double(), want.var(0, unbiased=False), rtol=1e-4, atol=0)
