"""Seeded train/validation split of a training set (the paper's 90:10).

The test set is always a separate, explicit dataset; it never passes through here.
"""

from __future__ import annotations

import numpy as np


def validation_size(n: int, val_fraction: float) -> int:
    """Number of validation structures: ``round(n * val_fraction)``, at least 1, leaving 1 to train.

    Raises:
        ValueError: when ``n < 2`` (nothing to split).
    """
    if n < 2:
        raise ValueError(
            f"the training data has {n} usable structure(s); at least 2 are needed to split it "
            "into training and validation parts"
        )
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    return min(max(1, round(n * val_fraction)), n - 1)


def train_val_split(
    n: int, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..n-1`` into (train, validation) index arrays, each sorted.

    The split depends only on ``n``, ``val_fraction`` and ``seed``:
    ``np.random.default_rng(seed).permutation(n)``, the first ``validation_size`` entries
    validate.
    """
    n_val = validation_size(n, val_fraction)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
