"""Hyperparameters of the ALIGNN model (paper Table S1, alignn v2023 "classic" defaults)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

# An RBF expansion needs at least two centers to define its spacing.
RBFBins = Annotated[int, Field(ge=2)]

#: How the layers compute (:mod:`tlsearch.model.kernels.choice`): ``auto`` (fused on CPU,
#: reference elsewhere), ``reference`` (plain PyTorch) or ``fused`` (the CPU kernels).
Kernel = Literal["auto", "reference", "fused"]

#: Fields that choose how the model computes, not what: not part of a run's identity (config
#: hashes, PT cache keys) and not saved with a model, so a model trained with one kernel runs
#: with whichever fits where it is loaded.
EXECUTION_FIELDS = frozenset({"kernel"})


def model_identity(model: dict) -> dict:
    """A ``model:`` settings mapping without its :data:`EXECUTION_FIELDS` (for hashing)."""
    return {k: v for k, v in model.items() if k not in EXECUTION_FIELDS}


class ALIGNNConfig(BaseModel):
    """Widths and depths of :class:`tlsearch.model.alignn.ALIGNN`.

    The field names and defaults are those of ``alignn.models.alignn.ALIGNNConfig``, so a
    checkpoint trained by alignn with the same values loads into our model unchanged. Layer
    counts may be 0 (alignn allows it, e.g. a model without line-graph layers); every width
    must be positive and each RBF expansion needs at least 2 bins. ``kernel`` is ours (not
    alignn's): it chooses how the layers compute, not what (see :data:`EXECUTION_FIELDS`).

    Attributes:
        alignn_layers: ALIGNN layers (bond-graph + line-graph edge-gated convolutions).
        gcn_layers: bond-graph-only edge-gated convolutions after the ALIGNN layers.
        atom_input_features: width of the input atom features (CGCNN: 92).
        edge_input_features: RBF bins for bond lengths on [0, 8] Angstrom.
        triplet_input_features: RBF bins for bond-angle cosines on [-1, 1].
        embedding_features: width of the intermediate RBF embedding layer.
        hidden_features: width of the atom, bond and angle features in every layer.
        output_features: number of predicted properties (columns of the output).
        kernel: ``auto`` (default: the fused CPU kernels on a CPU, the reference equations on
            every other device, CUDA included), ``reference`` or ``fused``
            (:mod:`tlsearch.model.kernels.choice`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    alignn_layers: NonNegativeInt = 4
    gcn_layers: NonNegativeInt = 4
    atom_input_features: PositiveInt = 92
    edge_input_features: RBFBins = 80
    triplet_input_features: RBFBins = 40
    embedding_features: PositiveInt = 64
    hidden_features: PositiveInt = 256
    output_features: PositiveInt = 1
    kernel: Kernel = "auto"
