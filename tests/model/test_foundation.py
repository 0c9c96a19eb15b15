"""Foundation-model families (CHGNet, SevenNet) as backbones: parity with their own packages,
batching, self-description, and named / local checkpoints. Tiny and offline (shipped weights)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from tlsearch.graphs.settings import GraphSettings
from tlsearch.model.backbone import Backbone, block_of, trunk_names
from tlsearch.model.foundation import UnknownFoundationError, known_names, load_foundation
from tlsearch.model.registry import from_description
from tlsearch.structures.records import StructureRecord

#: Features agree with the package's own to float32 rounding of a different summation order.
ATOL = 1e-4


def _records(n: int = 5, seed: int = 0) -> list[StructureRecord]:
    """Small random cubic cells of 1-3 atoms (generated, so parity is not one lucky case)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        atoms = int(rng.integers(1, 4))
        species = tuple(str(s) for s in rng.choice(["Si", "O", "Na", "Cl", "Fe"], atoms))
        out.append(StructureRecord(f"s{i}", np.eye(3) * (3.5 + 0.3 * i), rng.random((atoms, 3)),
                                   species, {"target": float(i)}))  # fmt: skip
    return out


def _features(model, records, indices=None) -> torch.Tensor:
    store = type(model).input_store(records, GraphSettings())
    with torch.no_grad():
        return model.features(store.collate(range(len(records)) if indices is None else indices))


@pytest.fixture(scope="module")
def chgnet_model():
    pytest.importorskip("chgnet")
    model, info = load_foundation("chgnet-0.3.0")
    return model, info


@pytest.fixture(scope="module")
def sevenn_model():
    pytest.importorskip("sevenn")
    model, info = load_foundation("sevenn-7net-0")
    return model, info


def test_chgnet_features_equal_the_packages_crystal_fea(chgnet_model):
    from chgnet.model import CHGNet
    from pymatgen.core import Lattice, Structure

    model, info = chgnet_model
    records = _records()
    ours = _features(model, records).numpy()
    ref_model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    structures = [Structure(Lattice(r.lattice), list(r.species), r.frac_coords) for r in records]
    preds = ref_model.predict_structure(structures, task="e", return_crystal_feas=True)
    ref = np.stack([p["crystal_fea"] for p in preds])
    assert ours.shape == (len(records), 64)
    np.testing.assert_allclose(ours, ref, atol=ATOL)
    assert info["backbone"] == "chgnet" and info["checkpoint"] == "chgnet-0.3.0"
    assert len(info["checkpoint_sha256"]) == 64 and info["checkpoint_version"]


def test_sevenn_features_equal_the_packages_node_features_averaged(sevenn_model):
    import ase
    import sevenn._keys as KEY
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from sevenn.util import model_from_checkpoint, pretrained_name_to_path

    model, info = sevenn_model
    records = _records()
    ours = _features(model, records)
    package, config = model_from_checkpoint(pretrained_name_to_path("7net-0"))
    package.eval()
    package.set_is_batch_data(False)
    last_gate = [name for name in package._modules if name.endswith("equivariant_gate")][-1]
    seen = []
    package._modules[last_gate].register_forward_hook(
        lambda module, args, out: seen.append(out[KEY.NODE_FEATURE].detach().mean(0))
    )
    for r in records:  # the package's own path: its calculator's graph, the whole model
        atoms = ase.Atoms(symbols=list(r.species), scaled_positions=r.frac_coords,
                          cell=r.lattice, pbc=True)  # fmt: skip
        package(AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, config["cutoff"])))
    torch.testing.assert_close(ours, torch.stack(seen), atol=ATOL, rtol=0)
    assert ours.shape == (len(records), model.feature_width)
    assert info["backbone"] == "sevenn"


@pytest.mark.parametrize("fixture", ["chgnet_model", "sevenn_model"])
def test_batched_features_and_layers(fixture, request):
    model, _ = request.getfixturevalue(fixture)
    assert isinstance(model, Backbone)
    records = _records(4, seed=1)
    batched = _features(model, records)
    single = torch.cat([_features(model, records, [i]) for i in range(len(records))])
    torch.testing.assert_close(batched, single, atol=ATOL, rtol=0)
    torch.testing.assert_close(batched, _features(model, records), atol=0, rtol=0)  # deterministic
    store = type(model).input_store(records, GraphSettings())
    with torch.no_grad():
        layers = model.layer_features(store.collate(range(len(records))))
    assert len(layers) >= 2 and layers[-1].shape == batched.shape
    torch.testing.assert_close(layers[-1], batched, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fixture", ["chgnet_model", "sevenn_model"])
def test_trunk_blocks_hold_every_parameter_but_the_head(fixture, request):
    model, _ = request.getfixturevalue(fixture)
    blocks = trunk_names(model)
    outside = [n for n, _ in model.named_parameters() if block_of(n, blocks) is None]
    assert outside == ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("fixture", ["chgnet_model", "sevenn_model"])
def test_description_rebuilds_the_model(fixture, request):
    model = copy.deepcopy(request.getfixturevalue(fixture)[0])
    model.replace_head(3)
    description = json.loads(json.dumps(model.describe()))  # JSON-safe
    rebuilt = from_description(description)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    records = _records(3, seed=2)
    store = type(model).input_store(records, GraphSettings())
    with torch.no_grad():
        batch = store.collate(range(3))
        torch.testing.assert_close(rebuilt(batch), model(batch), atol=0, rtol=0)
    assert rebuilt(batch).shape == (3, 3)


def test_unknown_names_fail_once_listing_the_known_ones():
    pytest.importorskip("chgnet")
    with pytest.raises(UnknownFoundationError) as err:
        load_foundation("chgnet-9.9.9")
    message = str(err.value)
    assert "chgnet-0.3.0" in message and "FAMILY:PATH" in message
    assert "chgnet-0.3.0" in known_names() and "chgnet-r2scan" in known_names()
    with pytest.raises(UnknownFoundationError):
        load_foundation("nosuchfamily:/tmp/x")


def test_local_alignn_checkpoint_folder(tmp_path):
    from tlsearch.model.alignn import ALIGNN
    from tlsearch.model.config import ALIGNNConfig

    folder = tmp_path / "mp_e_form_alignn"
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_foundation(f"alignn:{folder}")
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no alignn checkpoint"):
        load_foundation(f"alignn:{folder}")
    torch.manual_seed(0)
    source = ALIGNN(ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden_features=16,
                                 embedding_features=8))  # fmt: skip
    (folder / "config.json").write_text("{}")
    torch.save({"model": source.state_dict()}, folder / "checkpoint_10.pt")
    torch.save({"model": ALIGNN(source.config).state_dict()}, folder / "checkpoint_9.pt")
    model, info = load_foundation(f"alignn:{folder}")
    assert info["backbone"] == "alignn" and info["checkpoint_version"]
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=0, rtol=0)
    torch.save(ALIGNN(source.config).state_dict(), folder / "best_model.pt")  # preferred
    other, info_best = load_foundation(f"alignn:{folder}")
    assert info_best["checkpoint_sha256"] != info["checkpoint_sha256"]
