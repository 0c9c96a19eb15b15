"""Rebuild a saved transfer-learning model from its ``describe()`` output."""

from __future__ import annotations

from typing import Any

from torch import nn

from tlsearch.transfer.heads import HEADED_KIND, HeadedALIGNN
from tlsearch.transfer.mpt_model import MPT_KIND, MultiPropertyALIGNN


def from_description(description: dict[str, Any]) -> nn.Module:
    """A freshly initialised model of the described architecture (load its weights next).

    Raises:
        ValueError: unknown ``kind``.
    """
    kind = description.get("kind")
    if kind == HEADED_KIND:
        return HeadedALIGNN.from_description(description)
    if kind == MPT_KIND:
        return MultiPropertyALIGNN.from_description(description)
    raise ValueError(f"unknown model kind {kind!r} (known: {HEADED_KIND}, {MPT_KIND})")
