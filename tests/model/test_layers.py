"""Layers against direct transcriptions of their equations (float64, Python loops)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import tlsearch.model.kernels.bn_silu as bn_silu
import tlsearch.model.kernels.edge_gated as kernel
import tlsearch.model.kernels.fused as fused_layers
from tlsearch.model.layers import (
    ALIGNNConv,
    EdgeGatedGraphConv,
    MLPLayer,
    RBFExpansion,
)
from tlsearch.model.pooling import AvgPooling, average_pool

# 4 atoms; the pair 0->1 twice (two periodic images), a self-loop on 2, atom 3 receives nothing.
EDGES = [(0, 1), (0, 1), (1, 2), (2, 2), (2, 0), (3, 1), (1, 0)]
EDGE_INDEX = torch.tensor(EDGES).T
NUM_ATOMS = 4


def randomize_batchnorms(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial affine parameters and running moments in every BatchNorm of ``module``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm1d):
                for t, (lo, hi) in zip(
                    (bn.weight, bn.bias, bn.running_mean, bn.running_var),
                    ((0.5, 1.5), (-0.5, 0.5), (-0.3, 0.3), (0.5, 2.0)),
                ):
                    t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=gen))


def dense_edge_gated(conv: EdgeGatedGraphConv, x, y, training: bool):
    """alignn's EdgeGatedGraphConv written out edge by edge and node by node."""

    def lin(layer: nn.Linear, t):
        return layer.weight @ t + layer.bias

    def bn_silu(t, bn: nn.BatchNorm1d):
        if training:
            mean, var = t.mean(0), t.var(0, unbiased=False)
        else:
            mean, var = bn.running_mean, bn.running_var
        z = (t - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
        return z * torch.sigmoid(z)

    m = torch.stack(
        [
            lin(conv.src_gate, x[u]) + lin(conv.dst_gate, x[v]) + lin(conv.edge_gate, y[e])
            for e, (u, v) in enumerate(EDGES)
        ]
    )
    sigma = torch.sigmoid(m)
    rows = []
    for node in range(NUM_ATOMS):
        num = torch.zeros(m.shape[1], dtype=x.dtype)
        den = torch.zeros(m.shape[1], dtype=x.dtype)
        for e, (u, v) in enumerate(EDGES):
            if v == node:
                num = num + lin(conv.dst_update, x[u]) * sigma[e]
                den = den + sigma[e]
        rows.append(lin(conv.src_update, x[node]) + num / (den + 1e-6))
    x_new = bn_silu(torch.stack(rows), conv.bn_nodes)
    y_new = bn_silu(m, conv.bn_edges)
    return x + x_new, y + y_new, m


def make_conv(fused: bool, dim: int = 5, seed: int = 0) -> EdgeGatedGraphConv:
    torch.manual_seed(seed)
    conv = EdgeGatedGraphConv(dim, dim, kernel="fused" if fused else "reference").double()
    randomize_batchnorms(conv, seed)
    return conv


def inputs(dim: int = 5, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(NUM_ATOMS, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(len(EDGES), dim, generator=gen, dtype=torch.float64, requires_grad=True)
    return x, y


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_edge_gated_conv_matches_dense_equations(fused: bool, training: bool):
    conv = make_conv(fused).train(training)
    expected_conv = copy.deepcopy(conv)
    x, y = inputs()
    x_out, y_out = conv(EDGE_INDEX, x, y)
    with torch.no_grad():
        x_ref, y_ref, m = dense_edge_gated(expected_conv, x, y, training)
    torch.testing.assert_close(x_out, x_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y_out, y_ref, rtol=1e-10, atol=1e-10)
    if training:  # running moments: momentum 0.1 towards the batch mean / unbiased variance
        bn, bn0 = conv.bn_edges, expected_conv.bn_edges
        torch.testing.assert_close(bn.running_mean, 0.9 * bn0.running_mean + 0.1 * m.mean(0))
        torch.testing.assert_close(bn.running_var, 0.9 * bn0.running_var + 0.1 * m.var(0))
        assert int(bn.num_batches_tracked) == 1
        assert int(conv.bn_nodes.num_batches_tracked) == 1
    else:
        assert int(conv.bn_edges.num_batches_tracked) == 0


def test_node_without_incoming_edges_keeps_only_its_own_update():
    conv = make_conv(fused=True).eval()
    x, y = inputs()
    x_out, _ = conv(EDGE_INDEX, x, y)
    bn = conv.bn_nodes
    with torch.no_grad():
        pre = conv.src_update(x[3])  # h_3 = 0 / (0 + 1e-6) = 0
        z = (pre - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(x_out[3], x[3] + z * torch.sigmoid(z))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_kernel_gradcheck(training: bool):
    conv = make_conv(fused=True, dim=3).train(training)
    x, y = inputs(dim=3)
    names = [name for name, _ in conv.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in conv.parameters())

    def run(x, y, *params):
        state = dict(zip(names, params))
        x_out, y_out = torch.func.functional_call(conv, state, (EDGE_INDEX, x, y))
        return x_out, y_out

    assert torch.autograd.gradcheck(run, (x, y, *params))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("use_y_out", [True, False], ids=["x-and-y", "x-only"])
@pytest.mark.parametrize("keep_gates", [True, False], ids=["gates-kept", "gates-recomputed"])
def test_fused_equals_reference_with_many_chunks(
    monkeypatch, chunk_workers: int, training: bool, use_y_out: bool, keep_gates: bool
):
    """Chunks of 2 edges (7 edges: a partial last chunk); values, gradients, running stats;
    with the chunks run in turn or split over chunk workers."""
    dim = 4
    monkeypatch.setattr(kernel, "CHUNK_ELEMENTS", 2 * dim)
    monkeypatch.setattr(kernel, "SAVE_GATES_ELEMENTS", 1 << 20 if keep_gates else 0)
    assert bn_silu.split_plan(7, 2, False, torch.device("cpu"))[0] == chunk_workers
    reference = make_conv(fused=False, dim=dim).train(training)
    fused = copy.deepcopy(reference)
    fused.kernel = "fused"
    results = []
    for conv in (reference, fused):
        x, y = inputs(dim)
        x_out, y_out = conv(EDGE_INDEX, x, y)
        weights = torch.linspace(-1, 1, x_out.numel(), dtype=x.dtype).reshape(x_out.shape)
        loss = (x_out * weights).sum() + (y_out.square().sum() if use_y_out else 0)
        loss.backward()
        grads = [x.grad, y.grad] + [
            torch.zeros_like(p) if p.grad is None else p.grad for p in conv.parameters()
        ]
        results.append([x_out, y_out, *grads, *conv.buffers()])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_edges_out_false_gives_none_and_the_same_nodes(monkeypatch, fused: bool):
    """Skipping y' changes nothing else: node output, gradients and running moments."""
    monkeypatch.setattr(kernel, "CHUNK_ELEMENTS", 2 * 5)  # several chunks
    full = make_conv(fused).train()
    lean = copy.deepcopy(full)
    results = []
    for conv, edges_out in ((full, True), (lean, False)):
        x, y = inputs()
        x_out, y_out = conv(EDGE_INDEX, x, y, edges_out=edges_out)
        assert (y_out is None) == (not edges_out)
        (
            x_out * torch.linspace(-1, 1, x_out.numel(), dtype=x.dtype).reshape(x_out.shape)
        ).sum().backward()
        grads = [x.grad, y.grad] + [
            torch.zeros_like(p) if p.grad is None else p.grad for p in conv.parameters()
        ]
        results.append([x_out, *grads, *conv.buffers()])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_edge_index_is_reused_and_gives_the_same_result(monkeypatch):
    """An EdgeIndex (as ALIGNN passes) caches its chunk structures; results equal a tensor's."""
    monkeypatch.setattr(kernel, "CHUNK_ELEMENTS", 3 * 5)
    index = kernel.EdgeIndex(EDGE_INDEX)
    outputs = []
    for edge_index in (EDGE_INDEX, index, index):
        conv = make_conv(fused=True).train()
        outputs.append(conv(edge_index, *inputs()))
    assert len(index.chunks(NUM_ATOMS, 3)) == 3  # 7 edges in chunks of 3
    for got in outputs[1:]:
        for a, b in zip(got, outputs[0]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    reference = make_conv(fused=False).train()
    for a, b in zip(reference(index, *inputs()), outputs[0]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fused_conv_with_constant_edge_features():
    """Edge features that need no gradient (e.g. frozen embeddings) take the lean path."""
    conv = make_conv(fused=True)
    x, y = inputs()
    x_out, y_out = conv(EDGE_INDEX, x, y.detach())
    (x_out.sum() + y_out.sum()).backward()
    assert x.grad is not None and conv.edge_gate.weight.grad is not None


def test_training_needs_two_edges():
    conv = EdgeGatedGraphConv(3, 3)
    with pytest.raises(ValueError, match="more than 1 edge"):
        conv(torch.tensor([[0], [1]]), torch.randn(2, 3), torch.randn(1, 3))


def test_alignn_conv_updates_atoms_bonds_and_angles():
    torch.manual_seed(0)
    layer = ALIGNNConv(6, 6)
    lg_index = torch.tensor([[0, 1, 2, 4], [2, 3, 4, 0]])
    x, y, z = torch.randn(NUM_ATOMS, 6), torch.randn(len(EDGES), 6), torch.randn(4, 6)
    x2, y2, z2 = layer(EDGE_INDEX, lg_index, x, y, z)
    assert (x2.shape, y2.shape, z2.shape) == (x.shape, y.shape, z.shape)
    layer.eval()
    x_ref, m = layer.node_update(EDGE_INDEX, x, y)
    y_ref, z_ref = layer.edge_update(lg_index, m, z)
    for got, want in zip(layer.eval()(EDGE_INDEX, lg_index, x, y, z), (x_ref, y_ref, z_ref)):
        torch.testing.assert_close(got, want)
    x3, y3, z3 = layer(EDGE_INDEX, lg_index, x, y, z, angles_out=False)
    assert z3 is None
    torch.testing.assert_close((x3, y3), (x_ref, y_ref))


def test_rbf_expansion_formula():
    rbf = RBFExpansion(vmin=0.0, vmax=8.0, bins=80)
    spacing = 8.0 / 79
    torch.testing.assert_close(rbf.centers, torch.linspace(0.0, 8.0, 80))
    assert rbf.gamma == pytest.approx(1.0 / spacing, rel=1e-6)  # alignn: 1 / lengthscale
    d = torch.tensor([0.0, 1.234, 5.0, 7.99])
    expected = torch.exp(-(1.0 / spacing) * (d[:, None] - rbf.centers[None, :]) ** 2)
    torch.testing.assert_close(rbf(d), expected)
    assert list(dict(rbf.named_buffers())) == ["centers"]
    assert RBFExpansion(bins=10, lengthscale=0.5).gamma == pytest.approx(4.0)
    with pytest.raises(ValueError):
        RBFExpansion(bins=1)


def test_rbf_expansion_has_no_subnormal_outputs():
    """Bond lengths 0-8 A on the paper's 80 bins: exp underflows into subnormal floats for
    entries ~3.0-3.2 A from a center (x86 multiplies those on a slow path); they become 0,
    every other entry is exp's."""
    rbf = RBFExpansion(vmin=0.0, vmax=8.0, bins=80)
    d = torch.linspace(0.0, 8.0, 2001)
    out = rbf(d)
    tiny = torch.finfo(torch.float32).tiny
    raw = torch.exp(-rbf.gamma * (d[:, None] - rbf.centers) ** 2)
    subnormal = (raw > 0) & (raw < tiny)
    assert subnormal.sum() > 1000  # the case exists at these sizes
    assert not ((out > 0) & (out < tiny)).any()
    assert torch.equal(out[subnormal], torch.zeros(int(subnormal.sum())))
    assert torch.equal(out[~subnormal], raw[~subnormal])


def test_mlp_layer_is_linear_batchnorm_silu():
    layer = MLPLayer(7, 3).eval()
    assert [type(m) for m in layer.layer] == [nn.Linear, nn.BatchNorm1d, nn.SiLU]
    x = torch.randn(5, 7)
    lin, bn = layer.layer[0], layer.layer[1]
    z = (lin(x) - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(layer(x), z * torch.sigmoid(z))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("input_grad", [True, False], ids=["x-grad", "x-constant"])
def test_fused_mlp_layer_equals_sequential(
    monkeypatch, chunk_workers: int, training: bool, input_grad: bool
):
    """Values, gradients and running moments, with chunks of 3 rows (10 rows: partial last),
    run in turn or split over chunk workers."""
    monkeypatch.setattr(bn_silu, "CHUNK_ELEMENTS", 3 * 4)
    assert bn_silu.split_plan(10, 3, False, torch.device("cpu"))[0] == chunk_workers
    torch.manual_seed(0)
    reference = MLPLayer(6, 4, kernel="reference").double()
    randomize_batchnorms(reference)
    reference.train(training)
    fused = copy.deepcopy(reference)
    fused.kernel = "fused"
    x0 = torch.randn(10, 6, dtype=torch.float64) * 2 + 1
    results = []
    for layer in (reference, fused):
        x = x0.clone().requires_grad_(input_grad)
        out = layer(x)
        (
            out * torch.linspace(-1, 1, out.numel(), dtype=x.dtype).reshape(out.shape)
        ).sum().backward()
        grads = [p.grad for p in layer.parameters()] + ([x.grad] if input_grad else [])
        results.append([out, *grads, *layer.buffers()])
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_fused_mlp_layer_gradcheck():
    torch.manual_seed(0)
    layer = MLPLayer(3, 2, kernel="fused").double().train()
    names = [name for name, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)

    def run(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (x,))

    assert torch.autograd.gradcheck(run, (x, *params))


def test_fused_mlp_layer_training_needs_two_rows():
    with pytest.raises(ValueError, match="more than 1 value"):
        MLPLayer(3, 2, kernel="fused").train()(torch.randn(1, 3))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("residual", [True, False], ids=["residual", "plain"])
def test_batch_norm_silu_equals_batchnorm_then_silu(
    monkeypatch, chunk_workers: int, training: bool, residual: bool
):
    """The conv's node update ``silu(bn(m)) (+ x)``: values, gradients of m, gamma, beta and
    the residual, and the running moments as nn.BatchNorm1d's; chunks of 3 rows (10 rows)."""
    monkeypatch.setattr(bn_silu, "CHUNK_ELEMENTS", 3 * 4)
    torch.manual_seed(0)
    reference = nn.BatchNorm1d(4).double()
    randomize_batchnorms(reference)
    reference.train(training)
    fused = copy.deepcopy(reference)
    m0 = torch.randn(10, 4, dtype=torch.float64) * 2 + 1
    r0 = torch.randn(10, 4, dtype=torch.float64)
    weights = torch.linspace(-1, 1, 40, dtype=torch.float64).reshape(10, 4)
    results = []
    for kind, bn in (("reference", reference), ("fused", fused)):
        m, r = m0.clone().requires_grad_(), r0.clone().requires_grad_()
        if kind == "reference":
            out = torch.nn.functional.silu(bn(m)) + (r if residual else 0)
        else:
            out, mean, var = bn_silu.batch_norm_silu(m, bn, r if residual else None)
            if training:
                fused_layers.update_running_stats(bn, mean, var, count=10)
        (out * weights).sum().backward()
        grads = [m.grad, bn.weight.grad, bn.bias.grad] + ([r.grad] if residual else [])
        results.append([out, *grads, bn.running_mean, bn.running_var])
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_batch_norm_silu_gradcheck():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3).double().train()
    randomize_batchnorms(bn)
    m = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    r = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    gamma = bn.weight.detach().clone().requires_grad_()
    beta = bn.bias.detach().clone().requires_grad_()

    def run(m, gamma, beta, r):
        return bn_silu.BatchNormSiLU.apply(m, gamma, beta, None, None, bn.eps, r)[0]

    assert torch.autograd.gradcheck(run, (m, gamma, beta, r))


def test_batch_norm_silu_training_needs_two_rows():
    with pytest.raises(ValueError, match="more than 1 value"):
        bn_silu.batch_norm_silu(torch.randn(1, 3), nn.BatchNorm1d(3).train())


@pytest.fixture
def two_threads():
    """torch on 2 threads for the test; the session's count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_one_thread_restores_the_thread_count(two_threads):
    with pytest.raises(RuntimeError), bn_silu.OneThread(active=True) as one:
        assert torch.get_num_threads() == 1
        with one.all_threads():
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == 2
    with bn_silu.OneThread(active=False):
        assert torch.get_num_threads() == 2


def test_average_pool_is_mean_per_graph():
    x = torch.randn(6, 3)
    node_graph = torch.tensor([0, 0, 1, 2, 2, 2])
    pooled = average_pool(x, node_graph, num_graphs=4)
    expected = torch.stack([x[:2].mean(0), x[2], x[3:].mean(0), torch.zeros(3)])
    torch.testing.assert_close(pooled, expected)
    torch.testing.assert_close(AvgPooling()(x, node_graph, 4), expected)


def test_split_map_deals_shares_statically_and_restores_threads(two_threads):
    """Worker k gets items k, k + W, ...; torch runs on one thread inside a share (and without
    autograd); the caller's thread count is back after, also when a share raises."""
    from tlsearch.model.kernels.chunk_workers import reduce_in_order, split_map

    seen = split_map(lambda s: (s, torch.get_num_threads(), torch.is_grad_enabled()),
                     list(range(5)), 2)  # fmt: skip
    assert seen == [([0, 2, 4], 1, False), ([1, 3], 1, False)]
    assert torch.get_num_threads() == 2

    def fail(share):
        if 1 in share:
            raise RuntimeError("share failed")
        return share

    with pytest.raises(RuntimeError, match="share failed"):
        split_map(fail, [0, 1], 2)
    assert torch.get_num_threads() == 2
    assert split_map(len, [7], 2) == [1]  # one item: no threads
    assert reduce_in_order([None, torch.ones(2), None, torch.ones(2)]).tolist() == [2.0, 2.0]
    assert reduce_in_order([None]) is None


def test_split_map_works_in_a_forked_child(two_threads):
    """A child forked after the pool exists gets its own pool (it inherits no pool threads)."""
    import multiprocessing

    from tlsearch.model.kernels.chunk_workers import split_map

    assert split_map(sum, [1, 2, 3], 2) == [4, 2]  # the parent's pool exists now
    child = multiprocessing.get_context("fork").Process(target=_split_in_child)
    child.start()
    try:
        child.join(timeout=60)
        assert child.exitcode == 0, "split_map hung or failed in the forked child"
    finally:
        if child.is_alive():
            child.kill()


def _split_in_child() -> None:
    from tlsearch.model.kernels.chunk_workers import split_map

    torch.set_num_threads(2)
    raise SystemExit(0 if split_map(sum, [1, 2, 3], 2) == [4, 2] else 1)
