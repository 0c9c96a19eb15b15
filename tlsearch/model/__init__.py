"""ALIGNN in plain PyTorch (no DGL), weight-compatible with the ``alignn`` package.

:mod:`.layers` holds the equations (the ``reference`` kernel), :mod:`.kernels` the fused CPU
kernels that compute them faster on a CPU; the model setting ``kernel`` (:class:`ALIGNNConfig`)
chooses per device, and :mod:`.kernel_parity` checks that the two agree.

Importing the package is cheap (no torch): the names below load their module on first use, so
configs (:mod:`.config`) validate in processes that never build a model (the search driver).
"""

from __future__ import annotations

from tlsearch.lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _EXPORTS)
