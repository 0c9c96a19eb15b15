"""Statistics over seeds: mean with a t-distribution confidence interval, the paper's percentage
change vs scratch, and a paired test over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Metrics where lower is better (everything else, i.e. R2, is higher-is-better).
LOWER_IS_BETTER = ("mae", "rmse")


def lower_is_better(metric: str) -> bool:
    """Whether ``metric`` (``test_mae``, ``val_rmse_phys``, ``r2``...) improves downwards."""
    return any(f"{name}" in metric.split("_") for name in LOWER_IS_BETTER)


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` values with its two-sided confidence interval.

    ``half_width`` is ``t_{(1+c)/2, n-1} * s / sqrt(n)`` (the paper's SI margin of error);
    ``None`` when fewer than two values exist.
    """

    mean: float | None
    half_width: float | None
    n: int
    std: float | None

    @property
    def low(self) -> float | None:
        return None if self.mean is None or self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.mean is None or self.half_width is None else self.mean + self.half_width

    def text(self, digits: int = 3) -> str:
        """``0.653 ± 0.021 (n=5)``; ``–`` without values."""
        if self.mean is None:
            return "–"
        spread = "" if self.half_width is None else f" ± {self.half_width:.{digits}f}"
        return f"{self.mean:.{digits}f}{spread} (n={self.n})"


def finite(values: Iterable[object]) -> list[float]:
    """The finite floats among ``values`` (None, NaN and inf dropped)."""
    out = []
    for value in values:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(number)
    return out


def mean_ci(values: Iterable[object], confidence: float = 0.95) -> Estimate:
    """Mean and t-interval of the finite ``values``."""
    data = np.asarray(finite(values), dtype=float)
    n = int(data.size)
    if n == 0:
        return Estimate(None, None, 0, None)
    mean = float(data.mean())
    if n == 1:
        return Estimate(mean, None, 1, None)
    std = float(data.std(ddof=1))
    t = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1))
    return Estimate(mean, t * std / math.sqrt(n), n, std)


def pct_change(value: float | None, scratch: float | None, metric: str) -> float | None:
    """The paper's percentage change vs scratch (Sec. 3.2), positive = better than scratch.

    R2: ``(R2_ptft - R2_scratch) * 100 / |R2_scratch|``. For MAE/RMSE the sign is flipped
    (``(scratch - value) * 100 / |scratch|``) so that, as in the paper's Fig. 6c, positive
    always means an improvement.
    """
    if value is None or scratch is None or scratch == 0:
        return None
    if not (math.isfinite(value) and math.isfinite(scratch)):
        return None
    diff = scratch - value if lower_is_better(metric) else value - scratch
    return diff * 100.0 / abs(scratch)


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of a configuration against its baseline over the seeds both have."""

    n_pairs: int
    mean_improvement: float | None  # positive = better than the baseline
    p_value: float | None

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value is not None and self.p_value < alpha


def paired_test(
    ours: Mapping[int, float], baseline: Mapping[int, float], metric: str
) -> PairedTest:
    """Two-sided paired t-test over common seeds (seed ``k`` of both used FT sample ``k``)."""
    seeds = sorted(
        s for s in set(ours) & set(baseline) if finite([ours[s]]) and finite([baseline[s]])
    )
    if not seeds:
        return PairedTest(0, None, None)
    a = np.array([ours[s] for s in seeds], dtype=float)
    b = np.array([baseline[s] for s in seeds], dtype=float)
    gain = b - a if lower_is_better(metric) else a - b
    if len(seeds) < 2:
        return PairedTest(len(seeds), float(gain.mean()), None)
    if np.allclose(gain, gain[0]):
        p = 0.0 if gain[0] != 0 else 1.0
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    return PairedTest(len(seeds), float(gain.mean()), p)
