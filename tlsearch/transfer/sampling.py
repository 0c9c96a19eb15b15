"""Seeded choice of ``n`` fine-tuning structures out of a training pool (paper Sec. 2.5).

The paper compares random, weighted and uniform sampling of the 500 FT structures and finds
random sampling best in 3 of 4 PT-FT pairs. All three choose indices without replacement and
return them sorted ascending; the same ``(targets, n, method, seed, bins)`` always gives the
same indices. ``n`` equal to the pool size returns every index.

- ``random``: every structure equally likely (``Generator.choice`` without replacement).
- ``weighted``: structure ``i`` is drawn with probability proportional to a Gaussian kernel
  density estimate of the target distribution at its value, ``p_i ~ kde(y_i)``
  (``scipy.stats.gaussian_kde``, Scott's bandwidth rule), by successive draws without
  replacement. The sample follows the shape of the distribution but *sharpens* it: its density
  is roughly proportional to the pool density squared, so the modes are over-represented and
  the tails under-represented. A pool whose targets are all equal (no density to estimate)
  falls back to equal probabilities.
- ``uniform``: the target range is split into ``bins`` equal-width bins and every bin gets the
  same count, in round-robin: each non-empty bin receives ``n // k`` structures, bins holding
  fewer give all they have and the shortfall is spread again over the bins with structures
  left, and the final remainder goes one each to randomly chosen bins. Within a bin the
  structures are drawn at random. Rare target values are thus represented as much as common
  ones (per-bin counts equal within 1 wherever the bins hold enough structures).
"""

from __future__ import annotations

import numpy as np

from tlsearch.transfer.names import SAMPLING_METHODS


def _validate(targets: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(targets, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"targets must be 1-D (one value per structure), got {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"targets must be finite; index {int(bad[0])} is {values[bad[0]]}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n > values.size:
        raise ValueError(f"cannot sample n={n} structures from a pool of {values.size}")
    return values


def kde_weights(targets: np.ndarray) -> np.ndarray:
    """Probabilities proportional to the Gaussian KDE (Scott's rule) of ``targets`` at each."""
    from scipy.stats import gaussian_kde

    values = np.asarray(targets, dtype=np.float64)
    if values.size < 2 or np.ptp(values) == 0.0:
        return np.full(values.size, 1.0 / values.size)
    density = gaussian_kde(values, bw_method="scott")(values)
    return density / density.sum()


def bin_quotas(sizes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Round-robin counts per bin summing to ``n``, capped by each bin's ``sizes``.

    Equal shares for the bins that still have structures; bins that run out give all they
    have and the rest is re-shared; a remainder smaller than the number of open bins goes one
    each to randomly chosen open bins.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if n > sizes.sum():
        raise ValueError(f"cannot take {n} from bins holding {int(sizes.sum())}")
    quotas = np.zeros_like(sizes)
    remaining = n
    while remaining > 0:
        open_bins = np.flatnonzero(quotas < sizes)
        share = remaining // open_bins.size
        if share == 0:
            chosen = rng.choice(open_bins, size=remaining, replace=False)
            quotas[chosen] += 1
            break
        grant = np.minimum(share, sizes[open_bins] - quotas[open_bins])
        quotas[open_bins] += grant
        remaining -= int(grant.sum())
    return quotas


def equal_width_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin index (0..bins-1) of each value for ``bins`` equal-width bins over its range."""
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        return np.zeros(values.size, dtype=np.int64)
    index = np.floor((values - lo) / (hi - lo) * bins).astype(np.int64)
    return np.clip(index, 0, bins - 1)


def _uniform(values: np.ndarray, n: int, bins: int, rng: np.random.Generator) -> np.ndarray:
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    which = equal_width_bins(values, bins)
    members = [rng.permutation(np.flatnonzero(which == b)) for b in range(bins)]
    quotas = bin_quotas(np.array([m.size for m in members]), n, rng)
    return np.concatenate([m[:q] for m, q in zip(members, quotas)])


def sample_indices(
    targets: np.ndarray, n: int, method: str = "random", seed: int = 0, bins: int = 10
) -> np.ndarray:
    """Indices of ``n`` structures of the pool ``targets`` (1-D), sorted ascending.

    Args:
        targets: (pool,) finite target values of the candidate structures.
        n: how many to choose (1 <= n <= pool size; n == pool size gives every index).
        method: ``random``, ``weighted`` or ``uniform`` (see the module docstring).
        seed: seed of the numpy ``Generator``.
        bins: number of equal-width target bins for ``uniform``.

    Raises:
        ValueError: unknown method, non-finite targets, or ``n`` outside 1..pool size.
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(
            f"unknown sampling method {method!r}; valid: {', '.join(SAMPLING_METHODS)}"
        )
    values = _validate(targets, n)
    if n == values.size:
        return np.arange(values.size)
    rng = np.random.default_rng(seed)
    if method == "random":
        chosen = rng.choice(values.size, size=n, replace=False)
    elif method == "weighted":
        chosen = rng.choice(values.size, size=n, replace=False, p=kde_weights(values))
    else:
        chosen = _uniform(values, n, bins, rng)
    return np.sort(chosen)
