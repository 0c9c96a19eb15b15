"""``model.pt``: weights plus every setting needed to predict with nothing else.

The file is a plain dict (tensors, numbers, strings, lists, dicts), so it loads with
``torch.load(weights_only=True)``:

    format, format_version, tlsearch_version, state_dict, model_config, graph_settings,
    train_config, scaler, target_names, extra, architecture

``architecture`` is None for a plain ALIGNN (whose ``state_dict`` is alignn's, its widths in
``model_config``), else the model's ``describe()``: a backbone of another family
(:mod:`tlsearch.model.backbone`) or a model built on one (new head layers, multi-property
heads), which :func:`load_model` rebuilds through the model registry
(:func:`tlsearch.model.registry.from_description`, which also reads the descriptions written
by earlier versions).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import tlsearch
from tlsearch.graphs.settings import GraphSettings
from tlsearch.model.alignn import ALIGNN, set_kernel
from tlsearch.model.config import EXECUTION_FIELDS, ALIGNNConfig, Kernel
from tlsearch.model.registry import from_description
from tlsearch.training.config import TrainConfig
from tlsearch.training.scaler import TargetScaler

FORMAT = "tlsearch-model"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("state_dict", "model_config", "graph_settings", "scaler", "target_names")


@dataclass
class ModelBundle:
    """Everything in ``model.pt`` besides the weights, typed."""

    model_config: ALIGNNConfig
    graph_settings: GraphSettings
    scaler: TargetScaler
    target_names: list[str]
    train_config: TrainConfig | None = None
    tlsearch_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] | None = None


def save_model(
    path: Path | str,
    model: nn.Module,
    model_config: ALIGNNConfig,
    scaler: TargetScaler,
    graph_settings: GraphSettings,
    train_config: TrainConfig | None,
    target_names: list[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.pt`` atomically (temporary file, then rename); returns the path."""
    path = Path(path)
    # a plain ALIGNN keeps the format alignn and earlier versions read (its config is model_config)
    describes = type(model) is not ALIGNN and hasattr(model, "describe")
    architecture = model.describe() if describes else None
    if architecture is None and len(target_names) != model_config.output_features:
        raise ValueError(
            f"{len(target_names)} target names for a model with "
            f"{model_config.output_features} outputs"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tlsearch_version": tlsearch.__version__,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": model_config.model_dump(mode="json", exclude=EXECUTION_FIELDS),
        "graph_settings": graph_settings.model_dump(mode="json"),
        "train_config": train_config.model_dump(mode="json") if train_config else None,
        "scaler": scaler.to_dict(),
        "target_names": list(target_names),
        "extra": dict(extra or {}),
        "architecture": architecture,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_bundle(path: Path | str) -> tuple[dict[str, Any], ModelBundle]:
    """Read ``model.pt`` into (state_dict, bundle); errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    return bundle_from_payload(load_payload(path), path)


def load_payload(path: Path | str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only.

    Raises:
        ValueError: the file is damaged or holds anything else (other classes, code); the
            message names the file and the problem, never torch's advice to load it unsafely.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise ValueError(
            f"{path} is not a readable model file ({unreadable_reason(exc)}); tlsearch reads "
            "model files as tensors and plain values only and never runs code from them"
        ) from None


def unreadable_reason(exc: BaseException) -> str:
    """torch's loading error in one line, without its advice (``weights_only=False``, filing
    an issue, the docs link)."""
    if isinstance(exc, pickle.UnpicklingError):
        kept = [
            line.strip().removeprefix("WeightsUnpickler error:").strip()
            for line in str(exc).splitlines()
            if line.strip() and not any(a in line for a in _TORCH_ADVICE)
        ]
        detail = "; ".join(k for k in kept if k)
        return "damaged, or holds objects other than tensors" + (f": {detail}" if detail else "")
    first = str(exc).split(". ")[0].strip()
    return first or type(exc).__name__


_TORCH_ADVICE = ("weights_only", "Weights only load failed", "Please file an issue",
                 "Check the documentation")  # fmt: skip


def bundle_from_payload(payload: Any, path: Path | str) -> tuple[dict[str, Any], ModelBundle]:
    """:func:`read_bundle` of a ``model.pt`` already loaded (``path`` names it in errors)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tlsearch model file (no format={FORMAT!r} entry)")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"model file {path} lacks {', '.join(missing)}")
    train_config = payload.get("train_config")
    bundle = ModelBundle(
        model_config=ALIGNNConfig.model_validate(payload["model_config"]),
        graph_settings=GraphSettings.model_validate(payload["graph_settings"]),
        scaler=TargetScaler.from_dict(payload["scaler"]),
        target_names=list(payload["target_names"]),
        train_config=TrainConfig.model_validate(train_config) if train_config else None,
        tlsearch_version=str(payload.get("tlsearch_version", "")),
        extra=dict(payload.get("extra") or {}),
        architecture=payload.get("architecture"),
    )
    return payload["state_dict"], bundle


def load_model(
    path: Path | str, device: torch.device | str = "cpu", kernel: Kernel = "auto"
) -> tuple[nn.Module, ModelBundle]:
    """Rebuild the model of ``model.pt`` on ``device``, in eval mode, with its bundle; its
    layers run ``kernel`` (:mod:`tlsearch.model.kernels.choice`; files keep none)."""
    return model_from_bundle(*read_bundle(path), device=device, kernel=kernel)


def model_from_bundle(
    state_dict: dict[str, Any],
    bundle: ModelBundle,
    device: torch.device | str = "cpu",
    kernel: Kernel = "auto",
) -> tuple[nn.Module, ModelBundle]:
    """The model of a read ``model.pt`` (:func:`read_bundle`), as :func:`load_model`."""
    if bundle.architecture is None:
        model: nn.Module = ALIGNN(bundle.model_config)
    else:
        model = from_description(bundle.architecture)
    model.load_state_dict(state_dict)
    set_kernel(model, kernel)
    return model.to(device).eval(), bundle
