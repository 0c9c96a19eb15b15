"""Model families and saved model kinds -> the class that builds them.

:data:`FAMILIES` maps a backbone family's name (``describe()["kind"]`` of a bare backbone) to
its :class:`~tlsearch.model.backbone.Backbone` class; :data:`MODELS` maps the kinds of the
models built on a backbone (new head layers, multi-property heads) to theirs. Entries are
``"module:Class"`` strings resolved on first use, so a family's dependencies (e.g. a
foundation-model package) are imported only when that family is used. Adding a family is one
module and one line in :data:`FAMILIES`.

:func:`from_description` rebuilds any saved model from its description (``model.pt``'s
``architecture``), including the kinds written before the backbone interface existed.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from torch import nn

from tlsearch.model.backbone import Backbone

logger = logging.getLogger(__name__)

#: Backbone family name -> ``"module:Class"``.
FAMILIES: dict[str, str] = {
    "alignn": "tlsearch.model.alignn:ALIGNN",
    "chgnet": "tlsearch.model.families.chgnet:CHGNetBackbone",
    "sevenn": "tlsearch.model.families.sevenn:SevenNetBackbone",
}

#: ``describe()["kind"]`` of a model built on a backbone -> ``"module:Class"``.
MODELS: dict[str, str] = {
    "headed": "tlsearch.model.heads:HeadedBackbone",
    "closed_form": "tlsearch.model.closed_form:ClosedFormModel",
    "headed_alignn": "tlsearch.model.heads:HeadedBackbone",  # written before 2026-12
    "multi_property_alignn": "tlsearch.model.multi_property:MultiPropertyALIGNN",
}


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    # the registry's purpose: a family's module (and its dependencies) loads only when used
    return getattr(importlib.import_module(module), name)


def family(name: str) -> type[Backbone]:
    """The backbone class of family ``name``.

    Raises:
        ValueError: an unknown family (the message lists the known ones).
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(sorted(FAMILIES))})")
    return _resolve(FAMILIES[name])


def from_description(description: dict[str, Any]) -> nn.Module:
    """A freshly initialised model of the described architecture (load its weights next).

    Raises:
        ValueError: an unknown ``kind``, or a description its class rejects.
    """
    kind = description.get("kind") if isinstance(description, dict) else None
    if kind in MODELS:
        return _resolve(MODELS[kind]).from_description(description)
    if kind in FAMILIES:
        cls = family(kind)
        version = description.get("version")
        if version is not None and version != cls.family_version:
            logger.warning(
                "model description of %s version %s, built with version %s: check its outputs",
                kind, version, cls.family_version,
            )  # fmt: skip
        return cls.from_description(description)
    known = ", ".join(sorted([*MODELS, *FAMILIES]))
    raise ValueError(f"unknown model kind {kind!r} (known: {known})")
