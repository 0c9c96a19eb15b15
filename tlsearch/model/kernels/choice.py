"""Which kernel a layer runs on a device: the model setting ``kernel`` resolved.

``reference`` is the plain-PyTorch transcription of the equations (:mod:`tlsearch.model.layers`),
``fused`` the CPU kernels of this package. ``auto`` (the default) is ``fused`` on a CPU, where
they were written and checked (with the C loops of :mod:`.native` when they build; otherwise the
same kernels as torch ops, and one warning says why), and ``reference`` on every other device,
CUDA included, until ``tlsearch bench gpu`` has checked the fused kernel there. ``fused`` asked
for on another device runs (the caller's choice) after one warning per device type that it is
unchecked there.

The choice is made when a layer runs, from its input's device, so a model moved between devices
(or loaded from a file written on another one) runs the kernel that fits where it is.
"""

from __future__ import annotations

import logging
import threading
from typing import get_args

import torch

from tlsearch.model.config import Kernel

logger = logging.getLogger(__name__)

KERNELS: tuple[str, ...] = get_args(Kernel)

#: Devices on which the fused kernel has been checked against the reference (parity tests).
CHECKED_DEVICES = frozenset({"cpu"})

_warned: set[str] = set()
_lock = threading.Lock()


def check_kernel(kernel: str) -> str:
    """``kernel`` when it is one of :data:`KERNELS`, else a ValueError naming them."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}: expected one of {', '.join(KERNELS)}")
    return kernel


def uses_fused(kernel: str, device: torch.device) -> bool:
    """Whether a layer set to ``kernel`` runs the fused kernel on ``device`` (see the module
    docstring); decided before anything of the fused kernel is built or loaded."""
    if kernel == "reference":
        return False
    if device.type in CHECKED_DEVICES:
        return True
    if kernel == "auto":
        return False
    _warn_unchecked(device)
    return True


def _warn_unchecked(device: torch.device) -> None:
    with _lock:
        if device.type in _warned:
            return
        _warned.add(device.type)
    logger.warning(
        "kernel 'fused' on %s: the fused kernels have only been checked on CPU "
        "(tlsearch bench gpu checks them on CUDA); 'auto' runs 'reference' there",
        device.type,
    )
