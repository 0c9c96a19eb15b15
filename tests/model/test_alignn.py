"""The full model: shapes, batch invariance, gradients, and parity with the alignn package."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from tests.model.conftest import concat_batches, random_graph
from tests.model.test_layers import randomize_batchnorms
from tlsearch.model import ALIGNN, ALIGNNConfig, EdgeGatedGraphConv, load_alignn_state_dict
from tlsearch.model.peer import alignn_graphs, alignn_pure_model

SMALL = ALIGNNConfig(alignn_layers=2, gcn_layers=2, hidden_features=16, embedding_features=8)


def small_model(seed: int = 0, **overrides) -> ALIGNN:
    torch.manual_seed(seed)
    return ALIGNN(SMALL.model_copy(update=overrides))


def test_paper_defaults():
    cfg = ALIGNNConfig()
    assert (cfg.alignn_layers, cfg.gcn_layers, cfg.hidden_features) == (4, 4, 256)
    assert (cfg.embedding_features, cfg.edge_input_features, cfg.triplet_input_features) == (
        64,
        80,
        40,
    )
    assert (cfg.atom_input_features, cfg.output_features) == (92, 1)
    assert ALIGNN().config == cfg


@pytest.mark.parametrize(
    "bad", [{"hidden_features": 0}, {"gcn_layers": -1}, {"edge_input_features": 1}, {"x": 1}]
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValidationError):
        ALIGNNConfig(**bad)


@pytest.mark.parametrize("outputs", [1, 3])
def test_forward_and_embed_shapes(three_graphs, outputs):
    model = small_model(output_features=outputs)
    batch = concat_batches(three_graphs)
    assert model.embed(batch).shape == (3, 16)
    assert model(batch).shape == (3, outputs)
    model.eval()
    torch.testing.assert_close(model(batch), model.fc(model.embed(batch)))


def test_head_is_the_only_thing_after_embed(three_graphs):
    class WithMLP(ALIGNN):
        def __init__(self, config):
            super().__init__(config)
            self.mlp = nn.Sequential(nn.Linear(16, 16), nn.SiLU())

        def head(self, h):
            return self.fc(self.mlp(h))

    torch.manual_seed(0)
    model = WithMLP(SMALL).eval()
    batch = concat_batches(three_graphs)
    torch.testing.assert_close(model(batch), model.fc(model.mlp(model.embed(batch))))


def test_prediction_does_not_depend_on_the_rest_of_the_batch(three_graphs):
    model = small_model()
    randomize_batchnorms(model)
    model.eval()
    together = model(concat_batches(three_graphs))
    for i, graph in enumerate(three_graphs):
        torch.testing.assert_close(model(graph), together[i : i + 1], rtol=0, atol=1e-5)
    reordered = model(concat_batches(three_graphs[::-1]))
    torch.testing.assert_close(reordered.flip(0), together, rtol=0, atol=1e-5)


def test_gradient_reaches_every_parameter(three_graphs):
    model = small_model()
    batch = concat_batches(three_graphs)
    nn.functional.mse_loss(model(batch), batch.targets).backward()
    # The angle features of the last ALIGNN layer and the bond features of the last GCN layer
    # are discarded, so those two edge batch norms never influence the output (as in alignn).
    unused = {
        f"{layer}.bn_edges.{p}"
        for layer in ("alignn_layers.1.edge_update", "gcn_layers.1")
        for p in ("weight", "bias")
    }
    for name, p in model.named_parameters():
        if name in unused:
            assert p.grad is None or not p.grad.any(), name
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_zero_alignn_layers_skips_the_angle_branch(three_graphs):
    model = small_model(alignn_layers=0)
    batch = concat_batches(three_graphs)
    batch.angle_cosines = batch.angle_cosines[:0]
    batch.lg_index = batch.lg_index[:, :0]
    assert model(batch).shape == (3, 1)


# ---------------------------------------------------------------------------- alignn parity


def alignn_classic(peer, **fields) -> nn.Module:
    torch.manual_seed(1)
    return peer.classic.ALIGNN(peer.classic.ALIGNNConfig(name="alignn", **fields))


def shapes(state: dict) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in state.items()]


@pytest.mark.peer
def test_state_dict_keys_and_shapes_equal_alignn(alignn_peer):
    ours, theirs = ALIGNN(), alignn_classic(alignn_peer)
    assert shapes(ours.state_dict()) == shapes(theirs.state_dict())
    for key in ("edge_embedding.0.centers", "angle_embedding.0.centers"):
        torch.testing.assert_close(ours.state_dict()[key], theirs.state_dict()[key])
    for name in ("edge_embedding", "angle_embedding"):
        ours_rbf, theirs_rbf = getattr(ours, name)[0], getattr(theirs, name)[0]
        assert ours_rbf.gamma == pytest.approx(theirs_rbf.gamma, rel=1e-6)


@pytest.mark.peer
def test_weights_round_trip_both_ways(alignn_peer, tmp_path):
    ours, theirs = ALIGNN(), alignn_classic(alignn_peer)
    randomize_batchnorms(theirs, seed=3)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value)
    back = alignn_classic(alignn_peer)
    back.load_state_dict(ours.state_dict(), strict=True)
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], value)

    path = tmp_path / "checkpoint_100.pt"
    torch.save({"model": theirs.state_dict(), "epoch": 100}, path)
    fresh = ALIGNN()
    result = load_alignn_state_dict(fresh, path)
    assert not (result.missing or result.unexpected or result.mismatched)
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)


@pytest.mark.peer
def test_alignn_checkpoint_with_other_width_gives_a_clear_error(alignn_peer):
    theirs = alignn_classic(alignn_peer, hidden_features=128)
    with pytest.raises(
        ValueError, match="hidden_features mismatch: checkpoint has 128, model has 256"
    ):
        load_alignn_state_dict(ALIGNN(), theirs.state_dict())


def with_batchnorm(module: nn.Module) -> nn.Module:
    """alignn's pure-PyTorch layers normalize with LayerNorm, the classic model (the paper's)
    with BatchNorm: swap every LayerNorm for a BatchNorm1d to compare everything else."""
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.LayerNorm):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, nn.BatchNorm1d(child.normalized_shape[0]))
    return module


@pytest.mark.peer
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_edge_gated_conv_matches_alignn_pure_layer(alignn_peer, training):
    torch.manual_seed(0)
    theirs = with_batchnorm(alignn_peer.pure.EdgeGatedGraphConvPure(16, 16))
    randomize_batchnorms(theirs)
    ours = EdgeGatedGraphConv(16, 16)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.train(training), theirs.train(training)
    graph = random_graph(6, 5, seed=4)
    x, y = torch.randn(graph.num_nodes, 16), torch.randn(graph.num_edges, 16)
    src, dst = graph.edge_index
    got = ours(graph.edge_index, x, y)
    want = theirs.forward_tensors(src, dst, graph.num_nodes, x, y)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.bn_edges.running_var, theirs.bn_edges.running_var)


def alignn_pure_with_batchnorm(config: ALIGNNConfig) -> nn.Module:
    """alignn's ALIGNNAtomWisePure as a plain property model, with BatchNorm in its convs."""
    return with_batchnorm(alignn_pure_model(config))


@pytest.mark.peer
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_whole_model_matches_alignn_pure_model_with_batchnorm(alignn_peer, three_graphs, training):
    ours = small_model(output_features=2)
    randomize_batchnorms(ours)
    theirs = alignn_pure_with_batchnorm(ours.config)
    result = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert (result.missing_keys, result.unexpected_keys) == (["_species_table"], [])
    ours.train(training), theirs.train(training)
    batch = concat_batches(three_graphs)
    want = theirs((*alignn_graphs(batch), None))["out"]
    torch.testing.assert_close(ours(batch), want, rtol=1e-4, atol=1e-5)
