"""Typed settings of one training run: the paper's recipe (``TrainConfig``) and the whole run.

``RunConfig`` is what ``config.yaml`` in a run folder holds; ``tlsearch train --config`` reads the
same schema back, and command-line flags override it (see :func:`merge_overrides`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tlsearch.graphs.settings import GraphSettings, default_cache_dir
from tlsearch.model.config import ALIGNNConfig
from tlsearch.yamlfile import read_yaml_mapping

__all__ = [
    "FrozenTrunkConfig",
    "RunConfig",
    "TrainConfig",
    "default_cache_dir",
    "load_run_config",
]

PAPER_SMALL_BATCH = 16
PAPER_LARGE_BATCH = 64
PAPER_LARGE_THRESHOLD = 1000


class FrozenTrunkConfig(BaseModel):
    """Fine-tuning with a frozen trunk: compute it once, train the head on cached features.

    A fine-tuning strategy whose trainable parameters all come after ALIGNN's readout
    (``last_layer``, ``new_head``, ``new_head_freeze_6``) with frozen batch-norm statistics
    sees the same pooled trunk features for a structure in every epoch: they are computed once
    per (PT model, dataset) and only the head trains on them, with the same batches, optimiser,
    schedule and outputs (:mod:`tlsearch.transfer.frozen_trunk`). Exact, so on by default;
    where it would not be exact the run takes the graph path and ``metrics.json`` says why.

    Attributes:
        enabled: use cached trunk features where exact (``False``: always the graph path).
        cache: keep the features on disk under ``<cache_dir>/frozen_trunk``, keyed by the PT
            trunk's weights and the graph cache key, for the next seed-run (``False``: compute
            them in every run, keep nothing).
        max_cache_mb: bound of that folder; least recently used entries are removed beyond it.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    cache: bool = True
    max_cache_mb: float = Field(4096.0, gt=0)


class TrainConfig(BaseModel):
    """The training recipe (paper Sec. 2 and the data README), shared by scratch/PT/FT/MPT.

    Attributes:
        epochs: maximum number of epochs (the one-cycle schedule spans all of them).
        batch_size: structures per batch; ``None`` = the paper's rule: 16, or 64 when the
            training set as given (the PT or FT set, before its train/validation split) has more
            than 1,000 structures (see :meth:`resolve_batch_size`).
        learning_rate: AdamW learning rate, the one-cycle peak.
        weight_decay: AdamW weight decay (never applied to biases and normalisation parameters).
        optimizer: only ``adamw`` (the paper's).
        scheduler: ``onecycle`` (stepped every batch) or ``none`` (constant learning rate).
        pct_start: fraction of the one-cycle schedule spent increasing the learning rate.
        loss: ``mse`` (the paper's), ``l1``, or ``masked_l1`` (multi-property pre-training,
            Eq. 1: per structure the absolute error summed over its known properties, divided
            by ``mpt_loss_denominator``).
        mpt_loss_denominator: the divisor of Eq. 1 in ``masked_l1``: ``n_properties`` (the
            default: the number of properties N, as Eq. 1 is printed and as the paper's code
            computes it, ``L1Loss`` over ``pred * delta``) or ``known`` (each structure's count
            of known properties, so every structure weighs the same). See
            :mod:`tlsearch.training.losses`.
        early_stopping_patience: stop after this many epochs without a better validation value
            (the MAE; with ``masked_l1`` the validation masked loss, the training objective,
            not the MAE pooled over properties); ``None`` (the default) trains every epoch, as
            the paper's runs did: alignn's ``train.py`` never reads its ``n_early_stopping``
            (50), the paper's history files run to 500 epochs, and with patience 50 counted
            from the one-cycle peak two of three full-recipe PH100 scratch runs here stopped at
            epoch 200 (best epochs 34-38, test R2 0.00-0.10 against the paper's 0.59-0.63),
            before the annealing half of the schedule. Setting it saves epochs at that risk.
        early_stopping_after_warmup: with the one-cycle schedule, count patience only from the
            epoch where the learning rate peaks (``ceil(pct_start x epochs)``, epoch 150 of
            500): before it the rate is still rising, and a run stopped there never trained at
            its learning rate (a PH100 scratch run stopped at epoch 88, best epoch 38, test R2
            0.00, against the paper's 0.59-0.63). The best epoch is still chosen over all
            epochs. ``False`` counts from epoch 1.
        weights: which weights the run keeps, evaluates and saves: ``best`` (the default: the
            epoch with the lowest monitored validation value) or ``last`` (the final epoch's,
            which is what the paper's test predictions came from: alignn's in-memory
            ``best_model = net`` is a reference to the trained model, so after its 500 epochs
            it evaluates the last weights; its ``best_model.pt`` file holds the best ones).
            With 10 validation structures (an FT set of 100) the best epoch is a noisy choice.
        val_fraction: share of the training data held out for validation (the paper's 90:10).
        seed: seeds the split, the weights and the batch order.
        device: ``auto`` picks CUDA when present, else CPU.
        num_threads: CPU threads for torch (``None`` leaves torch's default).
        target_normalisation: ``none`` (default: the paper's shared data files are already
            normalised), ``paper`` (standardise, then min-max into [-1, 1], Sec. 2.3) or
            ``standardise``; fitted once per dataset on the whole training data (its non-test
            pool) before any sample is drawn, so every run on it shares the units. Metrics are
            reported in physical units and, when a scaler is used, also in normalised units.
        log_every: write a log line every this many epochs.
        precision: ``fp32`` (the paper's), ``tf32`` (TensorFloat-32 matmuls on CUDA) or
            ``bf16`` (bfloat16 autocast of the training step on CUDA); on a CPU both others
            train in fp32 (:mod:`tlsearch.training.precision`).
        frozen_trunk: fine-tuning only: train a frozen trunk's head on cached features where
            that is exact (:class:`FrozenTrunkConfig`).
        layer_lr_decay: layer-wise learning-rate decay (any backbone): the head (and new head
            layers) train at ``learning_rate``, trunk block ``k`` of ``K`` (data-flow order,
            :meth:`~tlsearch.model.backbone.Backbone.trunk_blocks`) at
            ``learning_rate * layer_lr_decay ** (K + 1 - k)``; the one-cycle schedule scales
            each. ``None`` (the default): one rate, as before (and the recipe's fingerprint
            and every hash stay as they were).
        ema_decay: keep an exponential moving average of the trainable weights (any backbone,
            :mod:`tlsearch.training.ema`), updated after every optimiser step with this decay;
            validation, the best epoch, the weights kept and ``model.pt`` use the average.
            ``None`` (the default): off, as before.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(500, ge=1)
    batch_size: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    optimizer: Literal["adamw"] = "adamw"
    scheduler: Literal["onecycle", "none"] = "onecycle"
    pct_start: float = Field(0.3, gt=0, lt=1)
    loss: Literal["mse", "l1", "masked_l1"] = "mse"
    mpt_loss_denominator: Literal["n_properties", "known"] = "n_properties"
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_after_warmup: bool = True
    weights: Literal["best", "last"] = "best"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1)
    target_normalisation: Literal["none", "paper", "standardise"] = "none"
    log_every: int = Field(10, ge=1)
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    frozen_trunk: FrozenTrunkConfig = Field(default_factory=FrozenTrunkConfig)
    layer_lr_decay: float | None = Field(None, gt=0, le=1)
    ema_decay: float | None = Field(None, gt=0, lt=1)

    def resolve_batch_size(self, n_structures: int) -> int:
        """The batch size for a training set of ``n_structures`` (``batch_size`` when set).

        ``n_structures`` is the set as given (the PT subset, the FT sample, the whole training
        data), BEFORE the train/validation split: the paper's "64 above 1,000 training points"
        counts its FT/PT sizes (1,000 -> 16, 1,001 -> 64, a 1,050 set -> 64 though it trains on
        945 after the 90:10 split).
        """
        if self.batch_size is not None:
            return self.batch_size
        return PAPER_LARGE_BATCH if n_structures > PAPER_LARGE_THRESHOLD else PAPER_SMALL_BATCH

    def patience_start_epoch(self) -> int:
        """The last epoch that early stopping does not count (0: it counts from epoch 1).

        With ``early_stopping_after_warmup`` and the one-cycle schedule: the epoch in which the
        learning rate reaches its peak, ``ceil(pct_start x epochs)``.
        """
        if not self.early_stopping_after_warmup or self.scheduler != "onecycle":
            return 0
        return math.ceil(self.pct_start * self.epochs)


class RunConfig(BaseModel):
    """Everything one ``tlsearch train`` run needs; written resolved to ``config.yaml``.

    Attributes:
        data: training data spec for ``load_data`` (jarvis json path, folder, ``matminer:CODE``,
            ``generated:N[:seed]``...); split into train and validation.
        test: optional held-out test data spec (never used for training or validation).
        allow_test_overlap: run even when test structures are identical to training ones (same
            lattice, coordinates and species); by default that is refused, naming them.
        allow_pickle: read ``data``/``test`` given as pickled tables (``.pkl``); reading a
            pickle runs the code it holds, so it is refused unless this says the file is trusted.
        target: property to read from the data (``None``: the loader's default, and every target
            the training records carry).
        data_home: where named datasets are looked up (passed to ``load_data``).
        out_dir: run folder for model, metrics, predictions, history and this config.
        cache_dir: graph cache folder (default: ``$TLSEARCH_CACHE`` or
            ``~/.cache/tlsearch/graphs``); ``None`` keeps graphs in memory only.
        train: the training recipe.
        model: ALIGNN architecture (``output_features`` is set to the number of targets).
        graphs: graph construction settings.
    """

    model_config = ConfigDict(extra="forbid")

    data: str
    test: str | None = None
    allow_test_overlap: bool = False
    allow_pickle: bool = False
    target: str | None = None
    data_home: Path | None = None
    out_dir: Path
    cache_dir: Path | None = Field(default_factory=default_cache_dir)
    train: TrainConfig = Field(default_factory=TrainConfig)
    model: ALIGNNConfig = Field(default_factory=ALIGNNConfig)
    graphs: GraphSettings = Field(default_factory=GraphSettings)

    def to_yaml(self) -> str:
        """The config as YAML (paths as strings), readable by :func:`load_run_config`."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``overrides`` into a copy of ``base`` (nested dicts merge, rest wins)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_run_config(
    path: Path | str | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Build a :class:`RunConfig` from an optional YAML file plus overrides (which win).

    Raises:
        pydantic.ValidationError: (a ``ValueError``) naming every unknown or invalid field.
    """
    base = read_yaml_mapping(path) if path is not None else {}
    return RunConfig.model_validate(merge_overrides(base, overrides or {}))
