"""Numeric precision of training (``train.precision``): ``fp32``, ``tf32`` or ``bf16``.

- ``fp32`` (default): every matmul in float32, as the paper trained.
- ``tf32``: on CUDA, matmuls and convolutions use TensorFloat-32 tensor cores (float32 storage,
  10-bit mantissa products; ``torch.backends.cuda.matmul.allow_tf32``), restored afterwards.
- ``bf16``: on CUDA, the training forward pass and loss run under ``torch.autocast`` with
  bfloat16 (weights, optimiser state and gradients stay float32); validation and test
  predictions run in float32.

On a CPU, ``tf32`` and ``bf16`` train in float32 (with a warning): the effective precision is
what ``metrics.json`` records as ``precision``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal

import torch

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "tf32", "bf16"]


def effective_precision(precision: str, device: torch.device) -> str:
    """``precision`` where ``device`` can honour it, else ``fp32`` (said in the log)."""
    if precision != "fp32" and device.type != "cuda":
        logger.warning("precision %s needs CUDA; training on %s in fp32", precision, device)
        return "fp32"
    return precision


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """TF32 matmuls and convolutions while inside (``tf32``), the previous setting after."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def training_autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast of a training step: bfloat16 on CUDA for ``bf16``, else nothing."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


__all__ = ["Precision", "effective_precision", "matmul_precision", "training_autocast"]
