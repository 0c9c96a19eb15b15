"""FT samplers: statistical behaviour of random / weighted / uniform, seeding, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from tlsearch.transfer.names import SAMPLING_METHODS
from tlsearch.transfer.sampling import (
    bin_quotas,
    equal_width_bins,
    sample_indices,
)


@pytest.fixture(scope="module")
def bimodal() -> np.ndarray:
    """Two narrow modes at -2 and +2 on a flat background over [-5, 5] (6,000 values)."""
    rng = np.random.default_rng(42)
    return np.concatenate(
        [rng.normal(-2, 0.4, 2500), rng.normal(2, 0.4, 2500), rng.uniform(-5, 5, 1000)]
    )


def _near_modes(values: np.ndarray) -> float:
    return float(np.mean(np.minimum(abs(values - 2), abs(values + 2)) < 0.5))


def test_random_follows_the_pool(bimodal: np.ndarray) -> None:
    sample = bimodal[sample_indices(bimodal, 500, "random", seed=0)]
    assert ks_2samp(sample, bimodal).statistic < 0.08
    assert abs(_near_modes(sample) - _near_modes(bimodal)) < 0.05


def test_weighted_over_represents_modes_and_uniform_flattens(bimodal: np.ndarray) -> None:
    fractions = {
        m: _near_modes(bimodal[sample_indices(bimodal, 500, m, seed=0)]) for m in SAMPLING_METHODS
    }
    assert fractions["weighted"] > fractions["random"] + 0.05
    assert fractions["uniform"] < fractions["random"] - 0.2
    weighted = bimodal[sample_indices(bimodal, 500, "weighted", seed=0)]
    random = bimodal[sample_indices(bimodal, 500, "random", seed=0)]
    assert ks_2samp(weighted, bimodal).statistic > ks_2samp(random, bimodal).statistic


def test_uniform_takes_equal_counts_per_bin(bimodal: np.ndarray) -> None:
    chosen = sample_indices(bimodal, 503, "uniform", seed=3, bins=10)
    counts = np.bincount(equal_width_bins(bimodal, 10)[chosen], minlength=10)
    assert counts.sum() == 503 and counts.max() - counts.min() <= 1


def test_uniform_sparse_bins_give_all_they_have() -> None:
    rng = np.random.default_rng(0)
    pool = np.concatenate([rng.uniform(0, 8, 300), [9.5, 9.6, 9.7]])  # last bin: 3 values
    chosen = sample_indices(pool, 100, "uniform", seed=1, bins=10)
    counts = np.bincount(equal_width_bins(pool, 10)[chosen], minlength=10)
    assert counts[-1] == 3 and counts.sum() == 100
    assert counts[:-1].max() - counts[:-1].min() <= 1


def test_bin_quotas_round_robin() -> None:
    rng = np.random.default_rng(0)
    quotas = bin_quotas(np.array([3, 100, 0, 100]), 50, rng)
    assert quotas[0] == 3 and quotas[2] == 0 and quotas.sum() == 50
    assert abs(int(quotas[1]) - int(quotas[3])) <= 1


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_seeded_sorted_unique(method: str, bimodal: np.ndarray) -> None:
    a = sample_indices(bimodal, 200, method, seed=7)
    assert np.array_equal(a, sample_indices(bimodal, 200, method, seed=7))
    assert not np.array_equal(a, sample_indices(bimodal, 200, method, seed=8))
    assert len(np.unique(a)) == 200 and np.all(np.diff(a) > 0)
    assert np.array_equal(sample_indices(bimodal[:50], 50, method, seed=1), np.arange(50))


def test_constant_targets_are_handled() -> None:
    pool = np.ones(20)
    for method in SAMPLING_METHODS:
        assert len(sample_indices(pool, 5, method, seed=0)) == 5


def test_errors_are_clear() -> None:
    pool = np.arange(10.0)
    with pytest.raises(ValueError, match="pool of 10"):
        sample_indices(pool, 11, "random")
    with pytest.raises(ValueError, match="positive integer"):
        sample_indices(pool, 0, "random")
    with pytest.raises(ValueError, match="valid: random, weighted, uniform"):
        sample_indices(pool, 3, "stratified")
    with pytest.raises(ValueError, match="index 2 is nan"):
        sample_indices(np.array([1.0, 2.0, np.nan]), 1, "random")
    with pytest.raises(ValueError, match="1-D"):
        sample_indices(np.zeros((3, 2)), 1, "random")
