"""Pretrained starting points by name: ``chgnet-0.3.0``, ``sevenn-7net-0``, ``alignn:PATH``.

A *foundation name* is either

- ``FAMILY-CHECKPOINT``: a checkpoint a family's package ships (offline), e.g. ``chgnet-0.3.0``,
  ``chgnet-r2scan``, ``sevenn-7net-0``, ``sevenn-7net-l3i5`` (:func:`known_names` lists them);
- ``FAMILY:PATH``: a local checkpoint the user downloaded once (the documented route for
  families whose weights are not in a package): for ``alignn``, a folder holding alignn's
  ``config.json`` and ``best_model.pt`` (else its last ``checkpoint_*.pt``), e.g. an unzipped
  model of alignn's pretrained registry (weights tlsearch's ALIGNN reads); for ``chgnet`` a
  ``.pth.tar`` and for ``sevenn`` a ``.pth``.

:func:`load_foundation` returns the backbone (eval mode, on the CPU) and its provenance:
``backbone`` (the family), ``checkpoint`` (the name or path), ``checkpoint_version`` (the
family's package version) and ``checkpoint_sha256`` (of the weights file), for ``model.pt``,
``metrics.json`` and the run config. Unknown names fail once, listing the known ones; a
missing local checkpoint says what to fetch and where to put it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tlsearch.model.registry import FAMILIES, family

logger = logging.getLogger(__name__)

#: Family -> (its package on PyPI, the module holding its shipped-checkpoint table).
_PACKAGES: dict[str, tuple[str, str]] = {
    "chgnet": ("chgnet", "tlsearch.model.families.chgnet"),
    "sevenn": ("sevenn", "tlsearch.model.families.sevenn"),
}
#: What to fetch for a local checkpoint that is missing, per family.
_FETCH_HINT: dict[str, str] = {
    "alignn": (
        "download a pretrained ALIGNN model once (alignn's registry: `python -c \"from "
        'alignn.pretrained import get_alignn2_model; print(get_alignn2_model(NAME))"`, or a '
        "zip of the original figshare registry), unzip it, and give the folder holding "
        "config.json and best_model.pt (or checkpoint_*.pt) as alignn:FOLDER"
    ),
    "chgnet": "give a CHGNet .pth.tar checkpoint file as chgnet:FILE",
    "sevenn": "give a SevenNet checkpoint .pth file as sevenn:FILE",
}


class UnknownFoundationError(ValueError):
    """A foundation name that names no known checkpoint (the message lists the known ones)."""


@dataclass(frozen=True)
class Foundation:
    """A resolved foundation name: family, checkpoint (shipped name or local path), file."""

    name: str
    family: str
    checkpoint: str
    weights: Path
    local: bool


def _shipped(family_name: str) -> dict[str, Path]:
    """Checkpoint name -> file of a family's package ({} when the package is not installed)."""
    package, module = _PACKAGES[family_name]
    try:
        mod = importlib.import_module(module)  # the family's package loads only when used
    except ImportError:
        return {}
    return {name: mod.checkpoint_path(name) for name in mod.CHECKPOINTS}


def known_names() -> list[str]:
    """Every shipped-checkpoint name of the installed families (``chgnet-0.3.0``...)."""
    return sorted(f"{fam}-{ckpt}" for fam in _PACKAGES for ckpt in _shipped(fam))


def _unknown(name: str) -> UnknownFoundationError:
    missing = [pkg for fam, (pkg, _) in _PACKAGES.items() if not _shipped(fam)]
    hint = f"; not installed: {', '.join(missing)} (pip install '.[foundation]')" if missing else ""
    return UnknownFoundationError(
        f"unknown foundation model {name!r}; known: {', '.join(known_names()) or 'none'}, or "
        f"FAMILY:PATH for a local checkpoint (families: {', '.join(sorted(FAMILIES))}){hint}"
    )


def resolve(name: str) -> Foundation:
    """The family, checkpoint and weights file of a foundation name.

    Raises:
        UnknownFoundationError: an unknown name or family.
        FileNotFoundError: a local checkpoint that is not there (says what to fetch).
    """
    fam, sep, path = name.partition(":")
    if sep:
        if fam not in FAMILIES:
            raise _unknown(name)
        return Foundation(name, fam, path, _local_weights(fam, Path(path)), local=True)
    fam, _, ckpt = name.partition("-")
    shipped = _shipped(fam) if fam in _PACKAGES else {}
    if ckpt not in shipped:
        raise _unknown(name)
    return Foundation(name, fam, ckpt, shipped[ckpt], local=False)


def _local_weights(fam: str, path: Path) -> Path:
    """The weights file of a local checkpoint (a file, or alignn's folder)."""
    hint = _FETCH_HINT.get(fam, f"give a {fam} checkpoint as {fam}:PATH")
    if not path.exists():
        raise FileNotFoundError(f"local {fam} checkpoint {path} does not exist: {hint}")
    if path.is_file():
        return path
    if fam == "alignn":
        best = path / "best_model.pt"
        found = [best] if best.is_file() else sorted(path.glob("checkpoint_*.pt"), key=_epoch)
        if (path / "config.json").is_file() and found:
            return found[-1]  # best_model.pt, else the last epoch's
    raise FileNotFoundError(f"{path} holds no {fam} checkpoint: {hint}")


def _epoch(path: Path) -> tuple[int, str]:
    """``checkpoint_300.pt`` -> (300, name): epochs in numeric order (not 300 < 95)."""
    number = path.stem.removeprefix("checkpoint_")
    return (int(number) if number.isdigit() else -1, path.name)


def sha256(path: Path) -> str:
    """Content hash of a weights file."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_foundation(name: str) -> tuple[nn.Module, dict[str, Any]]:
    """The backbone of a foundation name (eval mode, CPU) and its provenance.

    Raises:
        UnknownFoundationError, FileNotFoundError: see :func:`resolve`.
    """
    found = resolve(name)
    cls = family(found.family)
    source = str(found.weights) if found.local else found.checkpoint
    model = cls.from_pretrained(source)
    package = _PACKAGES.get(found.family, (found.family, ""))[0]
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    info = {
        "backbone": found.family, "checkpoint": found.name,
        "checkpoint_version": version, "checkpoint_sha256": sha256(found.weights),
    }  # fmt: skip
    logger.info("foundation model %s: %s", name, info)
    return model, info
