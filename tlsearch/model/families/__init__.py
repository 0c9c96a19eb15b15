"""Pretrained foundation-model families as backbones (:mod:`tlsearch.model.backbone`).

Each module wraps one package's pretrained model (CHGNet: :mod:`.chgnet`, SevenNet:
:mod:`.sevenn`) as a :class:`~tlsearch.model.backbone.Backbone`: the package's trunk
(embeddings and interaction blocks, weights as shipped), pooled crystal features, and a new
property head. :mod:`.inputs` is their shared input store (structures kept as records, each
family's own graphs built once per structure on first use and memoised), and
:mod:`tlsearch.model.foundation` resolves checkpoint names (``chgnet-0.3.0``,
``sevenn-7net-0``) and local checkpoint paths to a loaded backbone. A family's package is
imported by its module only, and the registry imports that module only when the family is used.
"""
