"""Kernel parity: the fused CPU kernels (:mod:`tlsearch.model.kernels`) against the reference
equations (:mod:`tlsearch.model.layers`) on one device, the check that holds the two together.

A small ALIGNN (every layer type of the paper's model: embeddings, ALIGNN and GCN layers, with
randomised batch-norm parameters and running moments) runs one batch of random crystal-like
graphs twice from the same weights, once with ``kernel: reference`` and once with ``fused``,
in training or eval mode; the loss is a fixed weighted sum of the outputs. Compared: the
outputs, the gradient of every parameter and (training) the updated running moments. Each
tensor's error is ``max |fused - reference| / scale``, the largest difference relative to the
tensor's largest entry (elementwise relative errors blow up at entries that happen to be near
zero; see :data:`SCALE_FLOOR` for tensors near zero throughout), and the check passes when
every error is within :data:`TOLERANCE` of the dtype.

Run by the test suite on every available device (``tests/model/test_kernel_parity.py``) and by
``tlsearch bench gpu`` on CUDA. Needs torch only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch

from tlsearch.graphs.batch import GraphBatch
from tlsearch.model.alignn import ALIGNN, set_kernel
from tlsearch.model.config import ALIGNNConfig

#: Largest scale-relative error per dtype. The kernels sum in another order (chunked, moments
#: in float64), so results differ by rounding. float32 on CPU, 15 seeds: outputs, running
#: moments and most gradients below 1e-5; the gradients of the biases before a batch norm
#: (zero in exact arithmetic, so rounding noise of sums that cancel) up to 1e-4.
TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-10}
#: A tensor's scale is at least this share of the largest scale among the tensors of its kind
#: (outputs, gradients, buffers).
SCALE_FLOOR = 1e-2

#: The model checked: every layer type of the paper's ALIGNN, narrower.
PARITY_MODEL = ALIGNNConfig(
    alignn_layers=2,
    gcn_layers=2,
    edge_input_features=16,
    triplet_input_features=8,
    embedding_features=16,
    hidden_features=32,
)


@dataclass(frozen=True)
class ParityResult:
    """One parity check: the largest scale-relative error, which tensor had it, the bound."""

    device: str
    training: bool
    dtype: str
    error: float
    worst: str
    tolerance: float
    tensors: int

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance

    def describe(self) -> str:
        mode = "train" if self.training else "eval"
        return (
            f"{mode} {self.dtype} on {self.device}: {self.tensors} tensors, largest error "
            f"{self.error:.2g} ({self.worst}; bound {self.tolerance:.0e})"
        )


def random_batch(
    sizes: tuple[int, ...] = (4, 6, 9), neighbors: int = 5, seed: int = 0, features: int = 92
) -> GraphBatch:
    """Random crystal-like graphs of ``sizes`` atoms in one batch: every atom has
    ``neighbors`` bonds to random atoms of its own graph (self-loops and repeats allowed, as
    periodic images make them); the line graph joins every bond (u -> v) to every bond
    (v -> w)."""
    gen = torch.Generator().manual_seed(seed)
    edges, graph_of_atom, offset = [], [], 0
    for graph, n in enumerate(sizes):
        src = torch.arange(n).repeat_interleave(neighbors)
        dst = torch.randint(0, n, src.shape, generator=gen)
        edges.append(torch.stack([src, dst]) + offset)
        graph_of_atom.append(torch.full((n,), graph))
        offset += n
    edge_index = torch.cat(edges, 1)
    src, dst = edge_index
    vectors = torch.randn(src.numel(), 3, generator=gen)
    lengths = 1.0 + 3.0 * torch.rand(src.numel(), 1, generator=gen)
    vectors = vectors / vectors.norm(dim=1, keepdim=True) * lengths
    # bond pairs (e, f) with e = (u -> v), f = (v -> w): f's source is e's destination
    pairs = (dst.unsqueeze(1) == src.unsqueeze(0)).nonzero().T.contiguous()
    r1, r2 = -vectors[pairs[0]], vectors[pairs[1]]
    cosines = (r1 * r2).sum(1) / (r1.norm(dim=1) * r2.norm(dim=1))
    return GraphBatch(
        atom_features=torch.rand(offset, features, generator=gen),
        edge_index=edge_index,
        edge_vectors=vectors,
        lg_index=pairs,
        angle_cosines=cosines.clamp(-1.0, 1.0),
        node_graph=torch.cat(graph_of_atom),
        num_graphs=len(sizes),
    )


def _randomise_batch_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial affine parameters and running moments (fresh ones are 1, 0, 0 and 1)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                shape = module.weight.shape
                module.weight.copy_(0.5 + torch.rand(shape, generator=gen))
                module.bias.copy_(0.2 * torch.randn(shape, generator=gen))
                module.running_mean.copy_(0.2 * torch.randn(shape, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(shape, generator=gen))


def _run(model: ALIGNN, batch: GraphBatch, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs, every parameter's gradient and the buffers after one step."""
    out = model(batch)
    (out * weights).sum().backward()
    tensors = {"output": out.detach()}
    for name, param in model.named_parameters():
        grad = param.grad if param.grad is not None else torch.zeros_like(param)
        tensors[f"grad {name}"] = grad
    for name, buffer in model.named_buffers():
        if buffer.is_floating_point():
            tensors[f"buffer {name}"] = buffer
    return tensors


def kernel_parity(
    device: torch.device | str,
    training: bool,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    config: ALIGNNConfig = PARITY_MODEL,
) -> ParityResult:
    """Fused vs reference on ``device`` (see the module docstring)."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    reference = ALIGNN(config.model_copy(update={"kernel": "reference"}))
    _randomise_batch_norms(reference, gen)
    fused = copy.deepcopy(reference)
    set_kernel(fused, "fused")
    batch = random_batch(seed=seed, features=config.atom_input_features).to(device)
    batch = replace(
        batch,
        atom_features=batch.atom_features.to(dtype),
        edge_vectors=batch.edge_vectors.to(dtype),
        angle_cosines=batch.angle_cosines.to(dtype),
    )
    weights = torch.randn(batch.num_graphs, config.output_features, generator=gen)
    weights = weights.to(device=device, dtype=dtype)
    results = []
    for model in (reference, fused):
        model.to(device=device, dtype=dtype).train(training)
        results.append(_run(model, batch, weights))
    want, got = results
    # a tensor near zero throughout (the gradient of a bias before a batch norm, zero in exact
    # arithmetic) is compared at a share of the largest scale of its kind
    largest = {kind: max(float(t.abs().max()) for n, t in want.items() if n.startswith(kind))
               for kind in ("output", "grad", "buffer")}  # fmt: skip
    errors = {}
    for name, ref in want.items():
        floor = SCALE_FLOOR * largest[name.split(" ")[0]]
        scale = max(float(ref.abs().max()), floor, torch.finfo(dtype).tiny)
        errors[name] = float((got[name] - ref).abs().max()) / scale
    worst = max(errors, key=errors.__getitem__)
    return ParityResult(
        device=str(device),
        training=training,
        dtype=str(dtype).removeprefix("torch."),
        error=errors[worst],
        worst=worst,
        tolerance=TOLERANCE[dtype],
        tensors=len(errors),
    )
