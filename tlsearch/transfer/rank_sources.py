"""Rank PT models for a target before fine-tuning any of them (issue 15, part 2).

For each PT model, the target's FT sample (the structures ``finetune`` would train on: the same
size, sampling and seed) goes through the model's frozen trunk once (the pooled features of
:mod:`tlsearch.transfer.frozen_trunk`, cached there, so a later ``last_layer``/``new_head``
fine-tune reuses them), and two closed-form transferability estimates are computed on those
features and the target's values:

- ``probe_mae``: the leave-one-out MAE (target units) of a ridge regression on the
  standardised features, its penalty chosen by leave-one-out error over a fixed grid; lower
  is better. It asks "how well does a linear head on this trunk predict the target?", the
  question ``last_layer`` answers by training. ``baseline_mae`` is the same leave-one-out MAE
  of predicting the mean: a probe no better than it says the trunk carries little of the
  target linearly.
- ``logme``: LogME (You et al., ICML 2021), the log marginal evidence per structure of a
  Bayesian linear model on the features, its two precisions fitted by evidence maximisation;
  higher is better.

Both cost one trunk pass over the sample and an SVD of an (n, hidden) matrix. Neither is
fine-tuning: they rank sources by how linearly their frozen features carry the target, which
may or may not order them as fine-tuned test MAEs do. :func:`spearman` serves the honest check
against fine-tuned results.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlsearch.graphs.settings import GraphSettings
from tlsearch.model.backbone import Backbone, unwrap_trunk
from tlsearch.model.foundation import load_foundation
from tlsearch.training.run import PreparedData, prepare_data
from tlsearch.transfer.frozen_trunk import (
    FeatureCache,
    Filled,
    compute_features,
    feature_key,
    trunk_digest,
)
from tlsearch.transfer.run import ft_sample, load_pretrained

logger = logging.getLogger(__name__)

RIDGE_GRID = np.logspace(-3, 4, 15)  # penalties, relative to the number of structures
FEATURE_CACHE_MB = 2048


@dataclass
class SourceScore:
    """One PT model's estimates for the target (see the module docstring)."""

    pretrained: str
    probe_mae: float
    probe_penalty: float
    baseline_mae: float
    logme: float
    n: int
    hidden: int
    seconds: float
    features_cached: bool

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


# --- the estimates ------------------------------------------------------------------------------


def ridge_loo(features: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(leave-one-out MAE, penalty) of ridge regression on standardised ``features``.

    The intercept is the mean of ``y``; for each penalty of :data:`RIDGE_GRID` (times n) the
    leave-one-out residuals come in closed form from the hat matrix's diagonal (one SVD), and
    the penalty with the lowest leave-one-out squared error is kept. Standardisation and the
    intercept are taken from all n structures (the usual closed-form approximation).
    """
    x, y = _standardised(features), np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 3:
        raise ValueError(f"a ridge probe needs 3 or more structures, got {n}")
    svd = np.linalg.svd(x, full_matrices=False)
    best = (math.inf, math.nan, math.nan)
    for penalty in RIDGE_GRID * n:
        loo = loo_residuals(x, y, float(penalty), svd)
        mse = float(np.mean(loo**2))
        if mse < best[0]:
            best = (mse, float(np.mean(np.abs(loo))), float(penalty))
    return best[1], best[2]


def loo_residuals(x: np.ndarray, y: np.ndarray, penalty: float, svd: Any = None) -> np.ndarray:
    """Leave-one-out residuals of ridge regression (unpenalised intercept) on columns ``x``
    centred over all rows: ``e_i / (1 - H_ii)`` with the hat matrix ``H = 11'/n + X (X'X +
    penalty I)^-1 X'``, exact for a linear smoother of this form."""
    if svd is None:  # ridge_loo passes the SVD of its (already centred) features once
        svd = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    u, s, _ = svd
    yc = y - y.mean()
    shrink = s**2 / (s**2 + penalty)
    residual = yc - u @ (shrink * (u.T @ yc))
    leverage = (u**2) @ shrink + 1.0 / len(y)
    return residual / np.clip(1.0 - leverage, 1e-12, None)


def logme(features: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-4) -> float:
    """LogME: log evidence per structure of Bayesian linear regression of ``y`` on features.

    The prior precision alpha and the noise precision beta are fitted by the fixed-point
    updates of evidence maximisation (MacKay), in the SVD basis of the features.
    """
    f, y = np.asarray(features, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    z2 = (u.T @ y) ** 2
    outside = max(float(y @ y - z2.sum()), 0.0)  # the part of y outside the features' span
    alpha = beta = 1.0
    for _ in range(max_iter):
        t = alpha + beta * sigma
        gamma = float(np.sum(beta * sigma / t))
        m2 = float(np.sum(beta**2 * sigma * z2 / t**2))
        res2 = float(np.sum(alpha**2 * z2 / t**2)) + outside
        new_alpha, new_beta = gamma / (m2 + 1e-12), (n - gamma) / (res2 + 1e-12)
        done = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    t = alpha + beta * sigma
    m2 = float(np.sum(beta**2 * sigma * z2 / t**2))
    res2 = float(np.sum(alpha**2 * z2 / t**2)) + outside
    logdet = float(np.sum(np.log(t))) + (d - sigma.size) * math.log(alpha)
    evidence = (
        n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
        - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2
    )  # fmt: skip
    return evidence / n


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN below 2 pairs."""
    if len(a) != len(b) or len(a) < 2:
        return math.nan
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _standardised(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


# --- one PT model on the target -----------------------------------------------------------------


def score_source(
    pretrained: str | Path,
    data: str,
    *,
    target: str | None = None,
    size: int | None = None,
    sampling: str = "random",
    seed: int = 0,
    cache_dir: Path | None = None,
    data_home: Path | None = None,
    graphs: GraphSettings | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    foundation: bool = False,
) -> SourceScore:
    """Both estimates of PT model ``pretrained`` for the target ``data``'s FT sample.

    The sample is ``finetune``'s (``size`` by ``sampling`` with ``seed``); the estimates use
    its training and validation parts together (no test structure is read). ``graphs``: the
    graph settings fine-tuning would use (default: the paper's). ``foundation``: ``pretrained``
    is a foundation model's name (``chgnet-0.3.0``, ``alignn:FOLDER``...:
    :mod:`tlsearch.model.foundation`), whose family's inputs are built.
    """
    start = time.perf_counter()
    model, _ = load_foundation(str(pretrained)) if foundation else load_pretrained(pretrained)
    trunk = unwrap_trunk(model)  # the backbone, bare or under new or multi-property heads
    input_store = None if trunk.family == "alignn" else type(trunk).input_store
    prepared = prepare_data(
        data, names=None, graph_settings=graphs or GraphSettings(), cache_dir=cache_dir,
        target=target, data_home=data_home, role="target", progress=False,
        input_store=input_store,
    )  # fmt: skip
    y = _single_target(prepared)
    pool = ft_sample(size, sampling, seed)(prepared)
    known = pool[np.isfinite(y[pool])]
    features, cached = _features(
        trunk, prepared, known, cache_dir, torch.device(device), batch_size
    )
    probe, penalty = ridge_loo(features, y[known])
    score = logme(features, y[known])
    return SourceScore(
        str(pretrained), probe, penalty, mean_loo_mae(y[known]), score, len(known),
        features.shape[1], time.perf_counter() - start, cached,
    )  # fmt: skip


def mean_loo_mae(y: np.ndarray) -> float:
    """Leave-one-out MAE of predicting the mean of the others (the probe's baseline)."""
    n = len(y)
    return float(np.mean(np.abs(y - y.mean())) * n / (n - 1))


def _single_target(prepared: PreparedData) -> np.ndarray:
    if prepared.targets is None or prepared.targets.shape[1] != 1:
        names = ", ".join(prepared.target_names)
        raise ValueError(
            f"rank-sources scores one target property; {prepared.spec} has {names}: "
            "name one with --target"
        )
    return prepared.targets[:, 0]


def _features(
    trunk: Backbone,
    prepared: PreparedData,
    indices: np.ndarray,
    cache_dir: Path | None,
    device: torch.device,
    batch_size: int,
) -> tuple[np.ndarray, bool]:
    """The pooled trunk features of ``indices`` (shared with the frozen-trunk FT cache)."""
    store = prepared.store
    width = trunk.feature_width
    filled = Filled(np.zeros((len(store), width), np.float32), np.zeros(len(store), bool))
    key = feature_key(trunk_digest(trunk), prepared, device)  # fine-tuning's entry too
    root = cache_dir / "frozen_trunk" if cache_dir is not None else None
    cache = FeatureCache(root, FEATURE_CACHE_MB << 20)

    def compute(missing: np.ndarray) -> np.ndarray:
        return compute_features(trunk, store, missing, batch_size, device)

    cache.fill(key, filled, indices, compute)
    return filled.features[indices], filled.computed == 0


def rank_sources(
    pretrained: Sequence[str | Path],
    data: str,
    by: str = "probe_mae",
    foundation: Sequence[str] = (),
    **kwargs: Any,
):
    """Every PT model's and foundation model's :class:`SourceScore`, ranked together, best
    first by ``by`` (``probe_mae`` or ``logme``)."""
    if by not in ("probe_mae", "logme"):
        raise ValueError(f"rank by probe_mae or logme, not {by!r}")
    if not pretrained and not foundation:
        raise ValueError("rank-sources needs --pretrained and/or --foundation models")
    scores = [score_source(p, data, **kwargs) for p in pretrained]
    scores += [score_source(f, data, foundation=True, **kwargs) for f in foundation]
    sign = 1.0 if by == "probe_mae" else -1.0
    return sorted(scores, key=lambda s: sign * getattr(s, by))


__all__ = ["SourceScore", "logme", "rank_sources", "ridge_loo", "score_source", "spearman"]
