"""Lazy package exports: a package's names load their module on first use (PEP 562).

Used by packages whose modules import torch, so that importing the package (or a torch-free
module in it) stays cheap in processes that never build a model (the search driver).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` -> ``<package>.<exports[name]>.name``."""

    def module_getattr(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return module_getattr
