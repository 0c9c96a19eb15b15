"""Load checkpoints written by the ``alignn`` package into :class:`tlsearch.model.ALIGNN`.

alignn saves either a bare ``state_dict`` (``best_model.pt``) or ``{"model": state_dict, ...}``
(older ``checkpoint_*.pt``), with a ``module.`` prefix on every key when trained under
DistributedDataParallel. Our module tree mirrors alignn's, so after unwrapping the keys and
shapes match one to one; when they do not, the error says which hyperparameter differs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tlsearch.model.config import ALIGNNConfig

logger = logging.getLogger(__name__)

DDP_PREFIX = "module."

# Config field -> (state_dict key, dimension of that tensor holding the value).
_SHAPE_FIELDS: dict[str, tuple[str, int]] = {
    "atom_input_features": ("atom_embedding.layer.0.weight", 1),
    "hidden_features": ("atom_embedding.layer.0.weight", 0),
    "edge_input_features": ("edge_embedding.0.centers", 0),
    "triplet_input_features": ("angle_embedding.0.centers", 0),
    "embedding_features": ("edge_embedding.1.layer.0.weight", 0),
    "output_features": ("fc.weight", 0),
}
_LAYER_FIELDS = ("alignn_layers", "gcn_layers")


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the model."""


@dataclass
class LoadResult:
    """What :func:`load_alignn_state_dict` could not load (all empty after a strict load)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def read_alignn_state_dict(source: Mapping[str, object] | str | os.PathLike) -> dict[str, Tensor]:
    """A plain ``state_dict`` from a path, a state_dict or ``{"model": state_dict}``.

    Unwraps ``{"model": ...}`` and strips a DDP ``module.`` prefix.
    """
    if isinstance(source, (str, os.PathLike)):
        source = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping):
        raise TypeError(f"expected a state_dict or a path to one, got {type(source).__name__}")
    if "model" in source and isinstance(source["model"], Mapping):
        source = source["model"]
    state = dict(source)
    if state and all(key.startswith(DDP_PREFIX) for key in state):
        state = {key[len(DDP_PREFIX) :]: value for key, value in state.items()}
    bad = [key for key, value in state.items() if not isinstance(value, Tensor)]
    if bad:
        raise TypeError(f"not a state_dict: non-tensor entries {bad[:5]}")
    return state


def infer_config_fields(state: Mapping[str, Tensor]) -> dict[str, int]:
    """The :class:`ALIGNNConfig` fields readable from a state_dict's keys and shapes."""
    fields: dict[str, int] = {}
    for name, (key, dim) in _SHAPE_FIELDS.items():
        if key in state and state[key].dim() > dim:
            fields[name] = int(state[key].shape[dim])
    for name in _LAYER_FIELDS:
        pattern = re.compile(rf"^{name}\.(\d+)\.")
        indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
        fields[name] = max(indices) + 1 if indices else 0
    return fields


def infer_config(state: Mapping[str, Tensor]) -> ALIGNNConfig:
    """The :class:`ALIGNNConfig` of an alignn state_dict (e.g. to build a model for it)."""
    return ALIGNNConfig(**infer_config_fields(state))


def load_alignn_state_dict(
    model: nn.Module,
    state_dict_or_path: Mapping[str, object] | str | os.PathLike,
    strict: bool = True,
) -> LoadResult:
    """Load an alignn checkpoint (see module docstring for the accepted forms) into ``model``.

    With ``strict=True`` any missing, unexpected or differently shaped entry raises
    :class:`CheckpointMismatchError`, naming the differing hyperparameters (e.g.
    ``hidden_features mismatch: checkpoint has 128, model has 256``). With ``strict=False``
    every entry whose key and shape match is loaded and the rest is returned and logged.
    """
    state = read_alignn_state_dict(state_dict_or_path)
    own = model.state_dict()
    result = LoadResult(
        missing=[key for key in own if key not in state],
        unexpected=[key for key in state if key not in own],
        mismatched=[
            key for key in state if key in own and tuple(state[key].shape) != tuple(own[key].shape)
        ],
    )
    if result.missing or result.unexpected or result.mismatched:
        message = _describe_mismatch(state, own, result)
        if strict:
            raise CheckpointMismatchError(message)
        logger.warning("Partial checkpoint load: %s", message)
    skip = set(result.mismatched)
    loadable = {key: value for key, value in state.items() if key in own and key not in skip}
    model.load_state_dict(loadable, strict=False)
    return result


def _describe_mismatch(
    state: Mapping[str, Tensor], own: Mapping[str, Tensor], result: LoadResult, limit: int = 8
) -> str:
    lines = ["checkpoint does not fit the model:"]
    ckpt_fields, model_fields = infer_config_fields(state), infer_config_fields(own)
    for name, model_value in model_fields.items():
        ckpt_value = ckpt_fields.get(name)
        if ckpt_value is not None and ckpt_value != model_value:
            lines.append(f"{name} mismatch: checkpoint has {ckpt_value}, model has {model_value}")
    for label, keys in (("missing keys", result.missing), ("unexpected keys", result.unexpected)):
        if keys:
            lines.append(f"{label} ({len(keys)}): {', '.join(keys[:limit])}")
    if result.mismatched:
        shapes = [
            f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(own[key].shape)}"
            for key in result.mismatched[:limit]
        ]
        lines.append(f"shape mismatches ({len(result.mismatched)}): {'; '.join(shapes)}")
    return "\n  ".join(lines)
