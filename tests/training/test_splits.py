"""Seeded 90:10 train/validation split."""

from __future__ import annotations

import numpy as np
import pytest

from tlsearch.training.splits import train_val_split, validation_size


def test_split_is_90_10_disjoint_and_complete():
    train, val = train_val_split(800, 0.1, seed=3)
    assert len(train) == 720 and len(val) == 80
    assert set(train).isdisjoint(val)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(800))


def test_split_is_reproducible_and_seed_dependent():
    a = train_val_split(100, 0.1, seed=1)
    b = train_val_split(100, 0.1, seed=1)
    c = train_val_split(100, 0.1, seed=2)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    # Documented recipe: the first n_val entries of the seeded permutation validate.
    expected = np.sort(np.random.default_rng(1).permutation(100)[:10])
    np.testing.assert_array_equal(a[1], expected)


def test_small_sets_keep_one_validation_and_one_training_structure():
    assert validation_size(10, 0.1) == 1
    assert validation_size(3, 0.1) == 1
    assert validation_size(2, 0.9) == 1
    with pytest.raises(ValueError, match="at least 2"):
        train_val_split(1)
