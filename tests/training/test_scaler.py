"""TargetScaler: the paper's standardise + min-max into [-1, 1], fitted on training data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlsearch.training.scaler import TargetScaler


def test_paper_mode_maps_training_targets_onto_minus_one_to_one():
    y = np.array([3.0, 7.0, 4.0, 10.0, 5.5])
    scaler = TargetScaler.fit(y, "paper")
    z = scaler.transform(y[:, None])
    assert z.min() == pytest.approx(-1.0)
    assert z.max() == pytest.approx(1.0)
    # Standardise then min-max, by hand.
    s = (y - y.mean()) / y.std()
    expected = 2 * (s - s.min()) / (s.max() - s.min()) - 1
    np.testing.assert_allclose(z[:, 0], expected, atol=1e-12)


def test_round_trip_numpy_and_torch_multi_property():
    rng = np.random.default_rng(0)
    y = rng.normal(loc=[5.0, -2.0], scale=[3.0, 0.1], size=(50, 2))
    for mode in ("paper", "standardise", "none"):
        scaler = TargetScaler.fit(y, mode)
        np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(y)), y, atol=1e-12)
        t = torch.tensor(y, dtype=torch.float32)
        back = scaler.inverse_transform(scaler.transform(t))
        assert back.dtype == torch.float32
        torch.testing.assert_close(back, t, rtol=1e-5, atol=1e-5)
    z = TargetScaler.fit(y, "paper").transform(y)
    np.testing.assert_allclose(z.min(axis=0), [-1, -1], atol=1e-12)
    np.testing.assert_allclose(z.max(axis=0), [1, 1], atol=1e-12)


def test_standardise_has_zero_mean_unit_std():
    y = np.array([[1.0], [2.0], [3.0], [10.0]])
    z = TargetScaler.fit(y, "standardise").transform(y)
    assert z.mean() == pytest.approx(0.0)
    assert z.std() == pytest.approx(1.0)


def test_unknown_targets_are_ignored_and_constant_targets_stay_invertible():
    y = np.array([[1.0, 4.0], [np.nan, 4.0], [3.0, 4.0]])
    scaler = TargetScaler.fit(y, "paper")
    assert np.all(np.isfinite(scaler.scale)) and np.all(scaler.scale > 0)
    np.testing.assert_allclose(scaler.transform(y)[[0, 2], 0], [-1.0, 1.0])
    np.testing.assert_allclose(scaler.transform(y)[:, 1], 0.0)
    with pytest.raises(ValueError, match="no finite training value"):
        TargetScaler.fit(np.array([[np.nan], [np.nan]]), "paper")


def test_dict_round_trip_and_errors():
    scaler = TargetScaler.fit(np.array([1.0, 2.0, 5.0]), "paper")
    again = TargetScaler.from_dict(scaler.to_dict())
    assert again.mode == "paper"
    np.testing.assert_array_equal(again.shift, scaler.shift)
    np.testing.assert_array_equal(again.scale, scaler.scale)
    with pytest.raises(ValueError, match="lacks 'scale'"):
        TargetScaler.from_dict({"mode": "paper", "shift": [0.0]})
    with pytest.raises(ValueError, match="target column"):
        scaler.transform(np.zeros((2, 3)))


def test_fingerprint_names_the_constants():
    a = TargetScaler.fit(np.array([1.0, 2.0, 5.0]), "paper")
    assert TargetScaler.from_dict(a.to_dict()).fingerprint() == a.fingerprint()
    assert TargetScaler.fit(np.array([1.0, 2.0, 6.0]), "paper").fingerprint() != a.fingerprint()
    assert TargetScaler.fit(np.array([1.0, 2.0, 5.0]), "standardise").fingerprint() != (
        a.fingerprint()
    )
