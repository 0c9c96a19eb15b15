"""ALIGNN in plain PyTorch (no DGL), weight-compatible with the ``alignn`` package."""

from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import ALIGNNConfig
from tlsearch.model.interop import (
    CheckpointMismatchError,
    LoadResult,
    infer_config,
    load_alignn_state_dict,
    read_alignn_state_dict,
)
from tlsearch.model.layers import ALIGNNConv, EdgeGatedGraphConv, MLPLayer, RBFExpansion
from tlsearch.model.pooling import AvgPooling, average_pool

__all__ = [
    "ALIGNN",
    "ALIGNNConfig",
    "ALIGNNConv",
    "AvgPooling",
    "CheckpointMismatchError",
    "EdgeGatedGraphConv",
    "LoadResult",
    "MLPLayer",
    "RBFExpansion",
    "average_pool",
    "infer_config",
    "load_alignn_state_dict",
    "read_alignn_state_dict",
]
