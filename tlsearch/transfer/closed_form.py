"""A closed-form head on frozen trunk features: ridge or RBF kernel ridge, tuned by k-fold CV.

``tlsearch finetune --strategy krr`` (or ``ridge``;
:data:`tlsearch.transfer.names.CLOSED_FORM_HEADS`) runs
:func:`closed_form_run`: nothing iterates, so it is not a training run but writes the same
outputs (``model.pt`` that ``tlsearch predict`` reads, ``metrics.json``, predictions).

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

import copy
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from tlsearch.model.backbone import Backbone
from tlsearch.model.closed_form import ClosedFormHead, ClosedFormModel
from tlsearch.training.batches import batch_chunks
from tlsearch.training.checkpoint import save_model
from tlsearch.training.config import RunConfig
from tlsearch.training.data import InputStoreFactory
from tlsearch.training.loop import GraphLoader, select_device
from tlsearch.training.outputs import write_json
from tlsearch.training.run import (
    PoolSelector,
    evaluate_and_write,
    pool_scaler,
    prepare_run_data,
    start_comment,
)
from tlsearch.transfer.frozen_trunk import (
    FeatureCache,
    Filled,
    compute_features,
    feature_key,
    trunk_digest,
)

logger = logging.getLogger(__name__)

ClosedFormKind = Literal["krr", "ridge"]
#: Regularisation strengths searched (both kinds).
ALPHAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: RBF widths searched, times 1 / feature width (standardised features: the usual scale).
GAMMA_FACTORS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


@dataclass
class ClosedFormFit:
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
) -> ClosedFormFit:
    """Fit a ridge / RBF kernel ridge head on ``features`` (n, width) -> ``targets`` (n, P).

    Rows with any unknown (NaN) target are left out. ``folds`` is capped at the number of rows.

    Raises:
        ValueError: an unknown kind, or fewer than 2 usable rows.
    """
    if kind not in ("krr", "ridge"):
        raise ValueError(f"unknown closed-form head {kind!r} (krr or ridge)")
    # scikit-learn (and scipy) take ~2.5 s to import: only where a closed-form head is fitted,
    # not in every fine-tuning process that imports this module
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, KFold

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
    head = ClosedFormFit(kind, mean, scale, search.best_estimator_, params, -search.best_score_)
    logger.info("closed-form head %s: %s, CV MAE %.4g on %d structures", kind, params,
                head.cv_mae, len(x))  # fmt: skip
    return head


def to_module(fit: ClosedFormFit) -> ClosedFormHead:
    """The fitted head as a :class:`~tlsearch.model.closed_form.ClosedFormHead` (exactly the
    estimator's predictions, in float64)."""
    est = fit.estimator
    width = fit.mean.shape[0]
    if fit.kind == "ridge":
        coef = np.atleast_2d(est.coef_)
        head = ClosedFormHead("ridge", width, coef.shape[0])
        tensors = {"weight": coef, "bias": np.atleast_1d(est.intercept_)}
    else:
        dual = np.asarray(est.dual_coef_).reshape(len(est.X_fit_), -1)
        head = ClosedFormHead("krr", width, dual.shape[1], len(dual), fit.params["gamma"])
        tensors = {"support": est.X_fit_, "dual_coef": dual}
    tensors |= {"mean": fit.mean, "scale": fit.scale}
    with torch.no_grad():
        for name, value in tensors.items():
            getattr(head, name).copy_(torch.as_tensor(np.asarray(value, dtype=np.float64)))
    return head


@torch.no_grad()
def pooled_layers(
    trunk: Backbone, store: Any, indices: np.ndarray, batch_size: int, device: torch.device
) -> np.ndarray:
    """(len(indices), total width) float32: every layer's pooled features, concatenated."""
    modes = [(module, module.training) for module in trunk.modules()]  # type: ignore[attr-defined]
    trunk.to(device).eval()  # type: ignore[attr-defined]
    try:
        rows = [
            torch.cat(trunk.layer_features(store.collate(chunk.tolist()).to(device)), dim=1)
            .float().cpu().numpy()
            for chunk in batch_chunks(np.asarray(indices, dtype=np.int64), batch_size)
        ]  # fmt: skip
    finally:
        for module, training in modes:
            module.training = training
    return np.concatenate(rows)


def closed_form_run(
    run: RunConfig,
    trunk: Backbone,
    kind: ClosedFormKind,
    select: PoolSelector,
    provenance: dict[str, Any],
    input_store: InputStoreFactory | None = None,
    progress: bool = False,
    folds: int = 5,
    layers: bool = False,
) -> dict[str, Any]:
    """Fit a closed-form head on ``trunk``'s pooled features of the FT sample; write the run.

    The FT sample (``select``: the structures fine-tuning would train and validate on) is
    used whole: ``folds``-fold CV on it chooses the regularisation (``metrics.json``'s
    ``closed_form.cv_mae``, normalised units), then the head is refitted on all of it. Its
    features are the frozen trunk's, read from and written to the frozen-trunk cache
    (``<cache_dir>/frozen_trunk``), so ``last_layer`` runs and ``rank-sources`` share them.
    ``layers``: the head reads the pooled features of every trunk layer the backbone exposes
    (:meth:`~tlsearch.model.backbone.Backbone.layer_features`), concatenated, instead of the
    last layer's (a cache entry of their own).
    """
    out = run.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if run.train.num_threads is not None:
        torch.set_num_threads(run.train.num_threads)
    device = select_device(run.train.device)
    train_data = prepare_run_data(run, run.data, None, "training", progress,
                                  input_store=input_store)  # fmt: skip
    names = train_data.target_names
    test_data = (
        prepare_run_data(run, run.test, names, "test", progress, input_store=input_store)
        if run.test
        else None
    )
    scaler = pool_scaler(train_data, run.train.target_normalisation)
    pool = select(train_data)
    targets = scaler.transform(train_data.targets)
    start = time.perf_counter()
    settings = run.train.frozen_trunk
    root = run.cache_dir / "frozen_trunk" if settings.cache and run.cache_dir else None
    cache = FeatureCache(root, int(settings.max_cache_mb * 2**20))
    store = train_data.store
    batch = run.train.resolve_batch_size(len(pool))
    key = feature_key(trunk_digest(trunk), train_data, device)
    if layers:
        width = pooled_layers(trunk, store, pool[:1], 1, device).shape[1]
        key = hashlib.blake2b(f"{key};layers".encode(), digest_size=20).hexdigest()
    else:
        width = trunk.feature_width
    filled = Filled(np.zeros((len(store), width), np.float32), np.zeros(len(store), dtype=bool))

    def compute(missing: np.ndarray) -> np.ndarray:
        if layers:
            return pooled_layers(trunk, store, missing, batch, device)
        return compute_features(trunk, store, missing, batch, device)

    cache.fill(key, filled, pool, compute)
    fit = fit_closed_form(filled.features[pool], targets[pool], kind, folds, run.train.seed)
    model = ClosedFormModel(copy.deepcopy(trunk), to_module(fit), layers=layers).eval()
    seconds = time.perf_counter() - start
    (out / "config.yaml").write_text(start_comment(provenance) + run.to_yaml(), encoding="utf-8")
    save_model(out / "model.pt", model, run.model, scaler, run.graphs, run.train, names,
               extra={"data": run.data, **provenance})  # fmt: skip
    metrics: dict[str, Any] = {
        "data": run.data, "test_data": run.test, "target_names": names,
        "target_normalisation": scaler.mode, "scaler": scaler.to_dict(),
        "provenance": provenance, "n_train": int(len(pool)), "n_val": 0,
        "train_seconds": seconds, "device": str(device), "val": None, "test": None,
        "closed_form": {"kind": kind, "params": fit.params, "cv_mae": fit.cv_mae,
                        "folds": folds, "features": "layers" if layers else "last",
                        "width": width, "features_computed": filled.computed,
                        "features_reused": filled.reused},
        "n_test": len(test_data.store) if test_data is not None else 0,
    }  # fmt: skip
    if test_data is not None:
        loader = GraphLoader(test_data.store, np.arange(len(test_data.store)),
                             scaler.transform(test_data.targets), batch)  # fmt: skip
        metrics["test"] = evaluate_and_write(
            model, loader, scaler, names, device, out / "predictions_test.csv"
        )
    write_json(out / "metrics.json", metrics)
    logger.info("closed-form %s head: test %s", kind, metrics["test"])
    return metrics
