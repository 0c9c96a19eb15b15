"""Hyperparameters of the ALIGNN model (paper Table S1, alignn v2023 "classic" defaults)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

# An RBF expansion needs at least two centers to define its spacing.
RBFBins = Annotated[int, Field(ge=2)]


class ALIGNNConfig(BaseModel):
    """Widths and depths of :class:`tlsearch.model.alignn.ALIGNN`.

    The field names and defaults are those of ``alignn.models.alignn.ALIGNNConfig``, so a
    checkpoint trained by alignn with the same values loads into our model unchanged. Layer
    counts may be 0 (alignn allows it, e.g. a model without line-graph layers); every width
    must be positive and each RBF expansion needs at least 2 bins.

    Attributes:
        alignn_layers: ALIGNN layers (bond-graph + line-graph edge-gated convolutions).
        gcn_layers: bond-graph-only edge-gated convolutions after the ALIGNN layers.
        atom_input_features: width of the input atom features (CGCNN: 92).
        edge_input_features: RBF bins for bond lengths on [0, 8] Angstrom.
        triplet_input_features: RBF bins for bond-angle cosines on [-1, 1].
        embedding_features: width of the intermediate RBF embedding layer.
        hidden_features: width of the atom, bond and angle features in every layer.
        output_features: number of predicted properties (columns of the output).
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
