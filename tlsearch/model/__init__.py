"""The models: the backbone interface, ALIGNN, and the transfer-learning models built on a backbone.

:mod:`.backbone` says what a model family provides (structures -> batch -> pooled features ->
head, named trunk blocks, a self-description) and :mod:`.registry` maps family names and saved
model kinds to classes. ALIGNN (:mod:`.alignn`, :mod:`.layers`, :mod:`.config`) is the first
family: plain PyTorch (no DGL), weight-compatible with the ``alignn`` package
(:mod:`.interop`). :mod:`.heads` (new MLP layers before a backbone's head) and
:mod:`.multi_property` (one head per property) are the transfer-learning models, and
:mod:`.closed_form` a backbone under a fitted (kernel) ridge head.

Pretrained foundation models are further families (:mod:`.families`: CHGNet, SevenNet, each
wrapping its package), and :mod:`.foundation` resolves a starting point's name
(``chgnet-0.3.0``, ``sevenn-7net-0``, ``alignn:FOLDER``) to a loaded backbone and its provenance.

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
