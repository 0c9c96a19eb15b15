"""CHGNet (Deng et al. 2023, the ``chgnet`` package) as a backbone: its trunk, pooled features.

The trunk is CHGNet's own modules with the package's weights: the atom, bond and angle
embeddings (with their learnable radial and angular bases), ``n_conv`` atom-convolution
layers interleaved with bond and angle updates, the readout layer norm, and the package's
pooling. :meth:`CHGNetBackbone.features` is exactly the package's ``crystal_fea``
(``CHGNet.predict_structure(..., return_crystal_feas=True)``; for the shipped checkpoints,
``mlp_first=True``, a sum over the atoms of the last layer's normalised atom features, 64
wide). The package's energy MLP, composition model and magnetic-moment head are left out (no
unused parameter trains); the head is a new ``Linear(atom_fea_dim, output_features)``.

Inputs are the package's ``CrystalGraph`` (its own graph converter and cutoffs), built once per
structure (:mod:`tlsearch.model.families.inputs`). Named checkpoints: the ones the package
ships (:data:`CHECKPOINTS`), offline.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import chgnet
from chgnet.model import CHGNet
from chgnet.model.basis import CutoffPolynomial
from chgnet.model.layers import GraphPooling
from chgnet.model.model import BatchedGraph
from pymatgen.core import Lattice, Structure
from torch import Tensor, nn

from tlsearch.model.families.inputs import LinearHeadBackbone, StructureBatch

if TYPE_CHECKING:
    from tlsearch.structures.records import StructureRecord

#: Checkpoint name -> file inside the installed ``chgnet`` package (the ones it ships).
CHECKPOINTS: dict[str, str] = {
    "0.3.0": "pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "0.2.0": "pretrained/0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
    "r2scan": "pretrained/r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
}
#: The package's module kept in the trunk, in data-flow order (the per-layer ones follow).
_EMBEDDINGS = ("atom_embedding", "bond_basis_expansion", "bond_embedding", "bond_weights_ag",
               "bond_weights_bg", "angle_basis_expansion", "angle_embedding")  # fmt: skip


def _quiet_chgnet(**model_args: Any) -> CHGNet:
    """``CHGNet(**model_args)`` without the package's print on construction (stdout stays
    the CLI's)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNet(**model_args)


def checkpoint_path(name: str) -> Path:
    """The file of a shipped checkpoint ``name`` (KeyError: not a shipped one)."""
    return Path(os.path.dirname(chgnet.__file__)) / CHECKPOINTS[name]


class CHGNetBackbone(LinearHeadBackbone):
    """CHGNet's trunk (weights as trained) with pooled crystal features and a new head.

    Args:
        model_args: the package's constructor arguments (``CHGNet.model_args``).
        output_features: width of the new head.
        checkpoint: the checkpoint the weights came from (provenance; not read to build).
    """

    family: ClassVar[str] = "chgnet"
    family_version: ClassVar[str] = "chgnet-0.4"
    #: Parameter-less trunk module types whose output does not depend on training mode
    #: (:func:`tlsearch.transfer.frozen_trunk.inexact_reason`).
    stateless_modules: ClassVar[tuple[type, ...]] = (CutoffPolynomial, GraphPooling, nn.Sigmoid)

    def __init__(
        self, model_args: dict[str, Any], output_features: int = 1, checkpoint: str | None = None
    ) -> None:
        super().__init__()
        net = _quiet_chgnet(**model_args)
        self.model_args = dict(net.model_args)
        self.checkpoint = checkpoint
        self._take(net)
        self.fc = nn.Linear(self.model_args["atom_fea_dim"], output_features)

    def _take(self, net: CHGNet) -> None:
        """Adopt ``net``'s trunk modules (weights shared with ``net``)."""
        for name in _EMBEDDINGS:
            setattr(self, name, getattr(net, name))
        self.atom_conv_layers = net.atom_conv_layers
        self.bond_conv_layers = net.bond_conv_layers
        self.angle_layers = net.angle_layers
        self.readout_norm = net.readout_norm
        self.pooling = net.pooling
        self.n_conv = net.n_conv
        # not a submodule: building graphs is input preparation, not part of the weights
        self.__dict__["converter"] = net.graph_converter

    # --- the backbone interface (tlsearch.model.backbone) -------------------------------------

    @property
    def feature_width(self) -> int:
        """The atom feature width (``atom_fea_dim``, 64 for the shipped checkpoints)."""
        return int(self.model_args["atom_fea_dim"])

    def _graphs(self, batch: StructureBatch) -> BatchedGraph:
        converter = self.converter
        key = f"chgnet:{converter.atom_graph_cutoff}:{converter.bond_graph_cutoff}"

        def build(record: StructureRecord) -> Any:
            structure = Structure(Lattice(record.lattice), list(record.species),
                                  record.frac_coords)  # fmt: skip
            return converter(structure, graph_id=record.id)

        graphs = [g.to(batch.device) for g in batch.inputs(key, build)]
        return BatchedGraph.from_graphs(
            graphs, bond_basis_expansion=self.bond_basis_expansion,
            angle_basis_expansion=self.angle_basis_expansion, compute_stress=False,
        )  # fmt: skip

    def _atom_layers(self, g: BatchedGraph) -> list[Tensor]:
        """Atom features after each atom convolution (the last after the readout norm);
        the package's ``CHGNet._compute`` up to its readout."""
        atom_feas = self.atom_embedding(g.atomic_numbers - 1)  # H is the first row
        bond_feas = self.bond_embedding(g.bond_bases_ag)
        weights_ag = self.bond_weights_ag(g.bond_bases_ag)
        weights_bg = self.bond_weights_bg(g.bond_bases_bg)
        has_angles = len(g.angle_bases) != 0
        angle_feas = self.angle_embedding(g.angle_bases) if has_angles else None
        out = []
        layers = zip(self.atom_conv_layers[:-1], self.bond_conv_layers, self.angle_layers,
                     strict=False)  # fmt: skip
        for atom_layer, bond_layer, angle_layer in layers:
            atom_feas = atom_layer(
                atom_feas=atom_feas, bond_feas=bond_feas, bond_weights=weights_ag,
                atom_graph=g.batched_atom_graph, directed2undirected=g.directed2undirected,
            )  # fmt: skip
            if has_angles and bond_layer is not None:
                bond_feas = bond_layer(
                    atom_feas=atom_feas, bond_feas=bond_feas, bond_weights=weights_bg,
                    angle_feas=angle_feas, bond_graph=g.batched_bond_graph,
                )  # fmt: skip
                if angle_layer is not None:
                    angle_feas = angle_layer(
                        atom_feas=atom_feas, bond_feas=bond_feas, angle_feas=angle_feas,
                        bond_graph=g.batched_bond_graph,
                    )  # fmt: skip
            out.append(atom_feas)
        atom_feas = self.atom_conv_layers[-1](
            atom_feas=atom_feas, bond_feas=bond_feas, bond_weights=weights_ag,
            atom_graph=g.batched_atom_graph, directed2undirected=g.directed2undirected,
        )  # fmt: skip
        if self.readout_norm is not None:
            atom_feas = self.readout_norm(atom_feas)
        out.append(atom_feas)
        return out

    def features(self, batch: StructureBatch) -> Tensor:
        """The package's ``crystal_fea`` (B, atom_fea_dim)."""
        g = self._graphs(batch)
        return self.pooling(self._atom_layers(g)[-1], g.atom_owners)

    def layer_features(self, batch: StructureBatch) -> list[Tensor]:
        """The atom features after each of the ``n_conv`` layers, pooled as ``features``."""
        g = self._graphs(batch)
        return [self.pooling(x, g.atom_owners) for x in self._atom_layers(g)]

    def trunk_blocks(self) -> list[tuple[str, nn.Module]]:
        """Embeddings, then per layer its atom convolution (and the bond and angle updates
        that follow it), then the readout norm and pooling."""
        names = [name for name in _EMBEDDINGS if getattr(self, name, None) is not None]
        for i in range(self.n_conv):
            names.append(f"atom_conv_layers.{i}")
            if i < len(self.bond_conv_layers) and self.bond_conv_layers[i] is not None:
                names.append(f"bond_conv_layers.{i}")
            if i < len(self.angle_layers) and self.angle_layers[i] is not None:
                names.append(f"angle_layers.{i}")
        names += [n for n in ("readout_norm", "pooling") if getattr(self, n) is not None]
        return [(name, self.get_submodule(name)) for name in names]

    def describe(self) -> dict[str, Any]:
        config = {"model_args": self.model_args, "output_features": self.output_features,
                  "checkpoint": self.checkpoint}  # fmt: skip
        return {"kind": self.family, "version": self.family_version, "config": config}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> CHGNetBackbone:
        if description.get("kind") != cls.family or "config" not in description:
            raise ValueError(f"not a CHGNet description: {sorted(description)}")
        return cls(**description["config"])

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike) -> CHGNetBackbone:
        """A shipped checkpoint by name (:data:`CHECKPOINTS`) or a CHGNet ``.pth.tar`` file,
        in eval mode (the head is new)."""
        name = str(source)
        path = checkpoint_path(name) if name in CHECKPOINTS else Path(source)
        with contextlib.redirect_stdout(io.StringIO()):
            net = CHGNet.from_file(str(path), mlp_out_bias=name == "0.2.0",
                                   version=name if name in CHECKPOINTS else None)  # fmt: skip
        model = cls(net.model_args, checkpoint=name)
        model.load_state_dict(_trunk_state(net), strict=False)
        return model.eval()


def _trunk_state(net: CHGNet) -> dict[str, Tensor]:
    """``net``'s weights of the modules :class:`CHGNetBackbone` keeps (same key names)."""
    kept = (*_EMBEDDINGS, "atom_conv_layers", "bond_conv_layers", "angle_layers",
            "readout_norm", "pooling")  # fmt: skip
    return {k: v for k, v in net.state_dict().items() if k.split(".")[0] in kept}
