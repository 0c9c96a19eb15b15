"""ALIGNN in plain PyTorch (no DGL), weight-compatible with the ``alignn`` package.

Importing the package is cheap (no torch): the names below load their module on first use, so
configs (:mod:`.config`) validate in processes that never build a model (the search driver).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ALIGNN": "alignn",
    "ALIGNNConfig": "config",
    "ALIGNNConv": "layers",
    "AvgPooling": "pooling",
    "CheckpointMismatchError": "interop",
    "EdgeGatedGraphConv": "layers",
    "LoadResult": "interop",
    "MLPLayer": "layers",
    "RBFExpansion": "layers",
    "average_pool": "pooling",
    "infer_config": "interop",
    "load_alignn_state_dict": "interop",
    "read_alignn_state_dict": "interop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tlsearch.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tlsearch.model.{_EXPORTS[name]}"), name)
