"""A closed-form head on frozen trunk features: ridge or RBF kernel ridge, tuned by k-fold CV.

The cheapest strategy for a pretrained trunk (the ``krr`` / ``ridge`` strategies of issue 34):
the pooled features of each structure are computed once (as for the frozen trunk,
:mod:`tlsearch.transfer.frozen_trunk`), standardised with the FT set's statistics, and a
ridge (linear) or kernel ridge (RBF) regression is fitted in closed form, its regularisation
(and kernel width) chosen by k-fold cross-validation on the FT set alone (mean absolute
error), then refitted on the whole FT set. Nothing iterates, so there is no learning rate, no
epoch and no early stopping; a fixed ``seed`` makes the folds, and so the result, reproducible.
scikit-learn comes with matminer (a core dependency).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold

logger = logging.getLogger(__name__)

ClosedFormKind = Literal["krr", "ridge"]
#: Regularisation strengths searched (both kinds).
ALPHAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: RBF widths searched, times 1 / feature width (standardised features: the usual scale).
GAMMA_FACTORS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


@dataclass
class ClosedFormHead:
    """A fitted head: standardisation, the estimator, the CV choice and score.

    Attributes:
        kind: ``krr`` or ``ridge``.
        params: the chosen hyper-parameters (``alpha``, and ``gamma`` for ``krr``).
        cv_mae: the chosen setting's mean absolute error over the CV folds.
    """

    kind: ClosedFormKind
    mean: np.ndarray
    scale: np.ndarray
    estimator: Any
    params: dict[str, float]
    cv_mae: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions (n, P) for pooled features (n, width)."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        out = self.estimator.predict(z)
        return out.reshape(len(z), -1)


def fit_closed_form(
    features: np.ndarray,
    targets: np.ndarray,
    kind: ClosedFormKind = "krr",
    folds: int = 5,
    seed: int = 0,
) -> ClosedFormHead:
    """Fit a ridge / RBF kernel ridge head on ``features`` (n, width) -> ``targets`` (n, P).

    Rows with any unknown (NaN) target are left out. ``folds`` is capped at the number of rows.

    Raises:
        ValueError: an unknown kind, or fewer than 2 usable rows.
    """
    if kind not in ("krr", "ridge"):
        raise ValueError(f"unknown closed-form head {kind!r} (krr or ridge)")
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64).reshape(len(x), -1)
    keep = np.isfinite(y).all(axis=1)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        raise ValueError(
            f"a closed-form head needs at least 2 structures with targets, got {len(x)}"
        )
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    if kind == "krr":
        estimator: Any = KernelRidge(kernel="rbf")
        grid = {"alpha": list(ALPHAS), "gamma": [g / x.shape[1] for g in GAMMA_FACTORS]}
    else:
        estimator = Ridge()
        grid = {"alpha": list(ALPHAS)}
    cv = KFold(n_splits=min(folds, len(x)), shuffle=True, random_state=seed)
    search = GridSearchCV(estimator, grid, cv=cv, scoring="neg_mean_absolute_error", refit=True)
    search.fit(z, y if y.shape[1] > 1 else y[:, 0])
    params = {k: float(v) for k, v in search.best_params_.items()}
    head = ClosedFormHead(kind, mean, scale, search.best_estimator_, params, -search.best_score_)
    logger.info("closed-form head %s: %s, CV MAE %.4g on %d structures", kind, params,
                head.cv_mae, len(x))  # fmt: skip
    return head
