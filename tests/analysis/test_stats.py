"""Mean ± t-interval, the paper's percentage change, the paired test over seeds."""

from __future__ import annotations

import math

import pytest

from tlsearch.analysis.stats import lower_is_better, mean_ci, paired_test, pct_change


def test_mean_ci_uses_the_t_distribution():
    est = mean_ci([1.0, 2.0, 3.0])
    # t_{0.975, 2} = 4.302653; s = 1; half = t * s / sqrt(3)
    assert est.mean == 2.0 and est.n == 3 and est.std == pytest.approx(1.0)
    assert est.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert est.text(2) == "2.00 ± 2.48 (n=3)"


def test_mean_ci_drops_missing_and_handles_tiny_samples():
    assert mean_ci([None, float("nan"), 2.0]).n == 1
    one = mean_ci([2.0])
    assert one.mean == 2.0 and one.half_width is None and one.text() == "2.000 (n=1)"
    assert mean_ci([]).mean is None and mean_ci([]).text() == "–"


def test_pct_change_is_positive_when_better():
    assert pct_change(0.7, 0.6, "test_r2") == pytest.approx(100 * 0.1 / 0.6)
    assert pct_change(0.02, 0.03, "test_mae") == pytest.approx(100 / 3)
    assert pct_change(0.04, 0.03, "test_mae") < 0
    # the paper divides by |R2 of scratch|: a negative scratch R2 still gives "better" > 0
    assert pct_change(-0.5, -1.0, "test_r2") == pytest.approx(50.0)
    assert pct_change(0.5, None, "test_r2") is None and pct_change(0.5, 0.0, "test_r2") is None


def test_lower_is_better():
    assert lower_is_better("test_mae") and lower_is_better("val_rmse_phys")
    assert not lower_is_better("test_r2") and not lower_is_better("r2")


def test_paired_test_pairs_by_seed():
    ours = {0: 0.020, 1: 0.022, 2: 0.019, 3: 0.024}
    base = {0: 0.030, 1: 0.029, 2: 0.031, 3: 0.033, 9: 0.1}
    test = paired_test(ours, base, "test_mae")
    assert test.n_pairs == 4 and test.mean_improvement == pytest.approx(0.0095)
    assert test.significant()
    worse = paired_test(base, ours, "test_mae")
    assert worse.mean_improvement < 0 and worse.p_value == pytest.approx(test.p_value)
    assert paired_test({0: 1.0}, {0: 2.0}, "test_r2").p_value is None
    assert paired_test({0: 1.0}, {1: 2.0}, "test_r2").n_pairs == 0
