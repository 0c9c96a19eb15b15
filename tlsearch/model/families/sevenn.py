"""SevenNet (Park et al. 2024, the ``sevenn`` package) as a backbone: its trunk, pooled features.

The trunk is the package's ``AtomGraphSequential`` with the weights as shipped, cut after the
last interaction block's gate: the edge embedding, the one-hot species embedding, then per
interaction block its self-connection, self-interaction, convolution and equivariant gate.
The energy readout and force output are removed. :meth:`SevenNetBackbone.features` is the mean
over a structure's atoms of the last gate's node features (invariant scalars: ``128x0e`` for
the shipped checkpoints); :meth:`~SevenNetBackbone.layer_features` the mean of the scalar
channels after every block's gate. The head is a new ``Linear(width, output_features)``.

Inputs are the package's own ``AtomGraphData`` (its neighbour list and cutoff), built once per
structure (:mod:`tlsearch.model.families.inputs`). Named checkpoints are those the package
ships (:data:`CHECKPOINTS`, offline); the multi-fidelity ``7net-mf-0`` needs a modality input
and is not offered yet. A model describes itself by its checkpoint (the architecture is the
checkpoint's; ``model.pt`` holds the fine-tuned weights), so a ``model.pt`` of a local
checkpoint needs that file where it was.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import ase
import sevenn._keys as KEY
import torch
from sevenn.atom_graph_data import AtomGraphData
from sevenn.train.dataload import unlabeled_atoms_to_graph
from sevenn.util import load_checkpoint, pretrained_name_to_path
from torch import Tensor, nn
from torch.fx import GraphModule
from torch_geometric.data import Batch

from tlsearch.model.families.inputs import LinearHeadBackbone, StructureBatch

if TYPE_CHECKING:
    from tlsearch.structures.records import StructureRecord

#: Checkpoint names the installed package ships (its own names).
CHECKPOINTS: tuple[str, ...] = ("7net-0", "7net-0_22may2024", "7net-l3i5")
_GATE = "_equivariant_gate"
_COMPILED_CONSTANT = re.compile(r"_tensor_constant\d+")


def checkpoint_path(name: str) -> Path:
    """The file of a shipped checkpoint ``name`` (KeyError: not a shipped one)."""
    if name not in CHECKPOINTS:
        raise KeyError(name)
    return Path(pretrained_name_to_path(name))


def _mean_pool(x: Tensor, owners: Tensor, n: int) -> Tensor:
    total = x.new_zeros((n, x.shape[1])).index_add_(0, owners, x)
    counts = torch.bincount(owners, minlength=n).clamp(min=1).to(x.dtype)
    return total / counts[:, None]


class SevenNetBackbone(LinearHeadBackbone):
    """SevenNet's trunk (weights as trained) with mean-pooled node features and a new head.

    Args:
        checkpoint: a shipped checkpoint name (:data:`CHECKPOINTS`) or a SevenNet checkpoint
            file; the package builds its model with the checkpoint's weights.
        output_features: width of the new head.
    """

    family: ClassVar[str] = "sevenn"
    family_version: ClassVar[str] = "sevenn-0.13"
    #: Parameter-less trunk module types whose output does not depend on training mode: all
    #: of SevenNet's (no dropout, no batch norm; e3nn's gates, bases and tensor products).
    stateless_modules: ClassVar[tuple[type, ...]] = (nn.Module,)

    def __init__(self, checkpoint: str, output_features: int = 1) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        cp = load_checkpoint(_checkpoint_file(checkpoint))
        self.cutoff = float(cp.config[KEY.CUTOFF])
        net = cp.build_model()
        gates = [name for name in net._modules if name.endswith(_GATE)]
        names = list(net._modules)
        for name in names[names.index(gates[-1]) + 1 :]:  # energy readout, force output
            net.delete_module_by_key(name)
        net.key_grad = None  # no forces: edge vectors need no gradient
        self.net = net
        self._gates = gates
        self.fc = nn.Linear(self._width(), output_features)

    def __deepcopy__(self, memo: dict[int, Any]) -> SevenNetBackbone:
        """A deep copy whose e3nn compiled tensor products keep their constants out of the
        ``state_dict``: copying a ``torch.fx.GraphModule`` registers them as (persistent)
        buffers, absent from a freshly built model, so a copy's weights would not load into
        a rebuilt one (``model.pt``) nor a rebuilt one's into the copy."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        for module in new.modules():
            if isinstance(module, GraphModule):
                constants = [n for n in module._buffers if _COMPILED_CONSTANT.fullmatch(n)]
                module._non_persistent_buffers_set.update(constants)
        return new

    def _width(self) -> int:
        return int(self.net._modules[self._gates[-1]].gate.irreps_out.dim)

    # --- the backbone interface (tlsearch.model.backbone) -------------------------------------

    def _batch(self, batch: StructureBatch) -> Any:
        cutoff = self.cutoff

        def build(record: StructureRecord) -> Any:
            atoms = ase.Atoms(symbols=list(record.species), scaled_positions=record.frac_coords,
                              cell=record.lattice, pbc=True)  # fmt: skip
            return AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, cutoff))

        return Batch.from_data_list(batch.inputs(f"sevenn:{cutoff}", build)).to(batch.device)

    def _run(self, batch: StructureBatch, keep: bool) -> tuple[list[Tensor], Tensor, int]:
        data = self._batch(batch)
        scalars: list[Tensor] = []
        handles = []
        if keep:

            def hook(module: nn.Module, args: tuple, output: Any) -> None:
                n = module.gate.irreps_out.count("0e")
                scalars.append(output[KEY.NODE_FEATURE][:, :n])

            handles = [self.net._modules[g].register_forward_hook(hook) for g in self._gates]
        try:
            out = self.net(data)
        finally:
            for handle in handles:
                handle.remove()
        return (scalars or [out[KEY.NODE_FEATURE]]), data[KEY.BATCH], batch.num_graphs

    def features(self, batch: StructureBatch) -> Tensor:
        """Mean over each structure's atoms of the last gate's node features (B, width)."""
        nodes, owners, n = self._run(batch, keep=False)
        return _mean_pool(nodes[-1], owners, n)

    def layer_features(self, batch: StructureBatch) -> list[Tensor]:
        """Mean over atoms of the scalar channels after each interaction block's gate."""
        nodes, owners, n = self._run(batch, keep=True)
        return [_mean_pool(x, owners, n) for x in nodes]

    def trunk_blocks(self) -> list[tuple[str, nn.Module]]:
        """The package's module sequence up to the last gate, one block per module."""
        return [(f"net.{name}", module) for name, module in self.net._modules.items()]

    def describe(self) -> dict[str, Any]:
        config = {"checkpoint": self.checkpoint, "output_features": self.output_features}
        return {"kind": self.family, "version": self.family_version, "config": config}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> SevenNetBackbone:
        if description.get("kind") != cls.family or "config" not in description:
            raise ValueError(f"not a SevenNet description: {sorted(description)}")
        return cls(**description["config"])

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike) -> SevenNetBackbone:
        """A shipped checkpoint by name or a SevenNet checkpoint file, in eval mode (the head
        is new)."""
        return cls(str(source)).eval()  # the package's build_model loads the weights


def _checkpoint_file(checkpoint: str) -> str:
    if checkpoint in CHECKPOINTS:
        return str(checkpoint_path(checkpoint))
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"SevenNet checkpoint {checkpoint} does not exist")
    return checkpoint
