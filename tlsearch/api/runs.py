"""The Python API of single runs: ``train``, ``pretrain``, ``finetune``, ``mpt_pretrain`` and
the :class:`Run` folder they return (re-exported by :mod:`tlsearch.api`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsearch.api.prediction import load_model
from tlsearch.logutil import log_to_file

if TYPE_CHECKING:
    import pandas as pd

    from tlsearch.prediction import Predictor
    from tlsearch.training.config import RunConfig


@dataclass(frozen=True)
class Run:
    """A finished run folder (``train``, ``pretrain``, ``finetune``, ``mpt_pretrain``).

    Attributes:
        out: the run folder (``model.pt``, ``metrics.json``, ``history.csv``, predictions...).
        metrics: the ``metrics.json`` dict (``test.mae``, ``val.r2``, ``best_epoch``...).
    """

    out: Path
    metrics: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.out / "model.pt"

    def history(self) -> pd.DataFrame:
        """Per-epoch losses and validation metrics (``history.csv``)."""
        import pandas as pd  # pandas: loaded on use, ``import tlsearch.api`` stays light

        return pd.read_csv(self.out / "history.csv")

    def predictions(self, split: str = "test") -> pd.DataFrame:
        """``predictions_<split>.csv`` (``test`` or ``val``): id, target, prediction."""
        import pandas as pd  # pandas: loaded on use, ``import tlsearch.api`` stays light

        return pd.read_csv(self.out / f"predictions_{split}.csv")

    def load_model(self, device: str = "auto") -> Predictor:
        """The trained model, ready to predict (:func:`load_model`)."""
        return load_model(self.model_path, device)


def run_config(
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """A :class:`~tlsearch.training.config.RunConfig` from a config and nested overrides.

    Args:
        config: a ``config.yaml`` path (e.g. a run's own), a mapping or a RunConfig.
        overrides: nested keys that win (``{"train": {"epochs": 5}}``); unknown keys are refused.

    Raises:
        ValueError: an unknown or invalid field (pydantic names it).
    """
    # The pydantic config models (~0.1 s to build): loaded on use, ``import tlsearch.api``
    # (and so ``tlsearch --help``) stays light; the same for the other configs below.
    from tlsearch.training.config import RunConfig, load_run_config, merge_overrides

    if isinstance(config, RunConfig):
        return RunConfig.model_validate(merge_overrides(config.model_dump(), dict(overrides or {})))
    if isinstance(config, Mapping):
        return RunConfig.model_validate(merge_overrides(dict(config), dict(overrides or {})))
    return load_run_config(config, dict(overrides or {}))


def _run_fields(
    data: str | Path | None,
    out: str | Path | None,
    test: str | Path | None,
    target: str | None,
    recipe: Mapping[str, Any] | None,
    model: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    from tlsearch.training.config import merge_overrides

    fields: dict[str, Any] = {
        "data": None if data is None else str(data),
        "out_dir": out,
        "test": None if test is None else str(test),
        "target": target,
        "train": dict(recipe) if recipe else None,
        "model": dict(model) if model else None,
    }
    given = {k: v for k, v in fields.items() if v is not None}
    return merge_overrides(dict(overrides or {}), given)


def _finish(cfg: RunConfig, work: Any) -> Run:
    """Run ``work(cfg)`` logging into ``<out>/train.log``, as the command does."""
    with log_to_file(cfg.out_dir / "train.log"):
        metrics = work(cfg)
    return Run(Path(cfg.out_dir), metrics)


def train(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    test: str | Path | None = None,
    target: str | None = None,
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Run:
    """Train one model from scratch and evaluate it (``tlsearch train``).

    Args:
        data: training data spec (split 90:10 into train/validation), e.g. a jarvis json file,
            a folder with ``id_prop.csv``, ``data.db`` with ``target=``, ``generated:200``.
        out: run folder.
        test: held-out test data spec.
        target: property key to read (ASE databases, DataFrames, matminer tables).
        config: a run config (``config.yaml`` path, mapping or RunConfig) to start from.
        recipe: :class:`~tlsearch.training.config.TrainConfig` fields (``epochs``, ``seed``,
            ``batch_size``, ``learning_rate``, ``target_normalisation``...).
        model: :class:`~tlsearch.model.config.ALIGNNConfig` fields (``hidden_features``...).
        overrides: any other nested RunConfig keys (``{"cache_dir": None}``: graphs in memory).
        progress: progress bars.

    Returns:
        The :class:`Run` (its folder and ``metrics.json``).

    Raises:
        ValueError: an invalid config (fields named), unusable data, or a test set overlapping
            the training data. FileNotFoundError: missing data.
    """
    from tlsearch.training.run import train_run  # torch: loaded when a run starts

    fields = _run_fields(data, out, test, target, recipe, model, overrides)
    cfg = run_config(config, fields)
    return _finish(cfg, lambda c: train_run(c, progress=progress))


def pretrain(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    size: int | None = None,
    test: str | Path | None = None,
    target: str | None = None,
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Run:
    """Pre-train on ``data`` (a seeded random subset of ``size``, all when None), as
    ``tlsearch pretrain``; the other arguments as :func:`train`. Its folder is a ``pretrained``
    source for :func:`finetune`."""
    from tlsearch.transfer.run import pretrain_run  # torch: loaded when a run starts

    cfg = run_config(config, _run_fields(data, out, test, target, recipe, model, overrides))
    return _finish(cfg, lambda c: pretrain_run(c, size=size, progress=progress))


def finetune(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    pretrained: str | Path | None = None,
    strategy: str = "unfreeze_all",
    size: int | None = None,
    sampling: str = "random",
    train_frozen_bn: bool = False,
    test: str | Path | None = None,
    target: str | None = None,
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
    foundation: str | None = None,
    freeze_first: int | None = None,
    features: str = "last",
) -> Run:
    """Fine-tune a pre-trained model on ``data`` (``tlsearch finetune``).

    Args:
        pretrained: a PT run folder, a tlsearch ``model.pt``, an MPT model or an alignn
            checkpoint; None with ``strategy="scratch"`` trains from scratch on the same path.
        strategy: an FT strategy (``unfreeze_all``, ``new_head``, ``last_layer``,
            ``interaction_2b``, ``interaction_3b``, ...; paper Sec. 2.4), or ``krr`` /
            ``ridge``: a closed-form head on the frozen trunk's features, tuned by 5-fold CV
            (:mod:`tlsearch.transfer.closed_form`).
        size: FT training set size drawn from ``data`` (all when None).
        sampling: ``random``, ``weighted`` or ``uniform`` (paper Sec. 2.5).
        train_frozen_bn: let BatchNorm statistics of frozen layers update (the paper's code).
        foundation: instead of ``pretrained``, a pretrained foundation model by name:
            ``chgnet-0.3.0``, ``sevenn-7net-0``... (shipped with their packages, offline), or
            ``FAMILY:PATH`` for a local checkpoint (``alignn:FOLDER`` with alignn's
            ``config.json`` and ``checkpoint_*.pt``); see :mod:`tlsearch.model.foundation`.
        freeze_first: partial freezing: also freeze the backbone's first k trunk blocks.
        features: with ``krr`` / ``ridge``: ``last`` layer's pooled features or every
            ``layers``' (concatenated).
        others: as :func:`train`.
    """
    from tlsearch.transfer.run import finetune_run  # torch: loaded when a run starts

    cfg = run_config(config, _run_fields(data, out, test, target, recipe, model, overrides))
    return _finish(
        cfg,
        lambda c: finetune_run(
            c, pretrained=pretrained, strategy=strategy, size=size, sampling=sampling,
            freeze_batchnorm_stats=not train_frozen_bn, progress=progress,
            foundation=foundation, freeze_first=freeze_first, features=features,
        ),
    )  # fmt: skip


def mpt_pretrain(
    datasets: Mapping[str, str],
    out: str | Path | None = None,
    *,
    exclude_target: str | None = None,
    exclude_data: Sequence[str] = (),
    head_layers: int = 1,
    loss_denominator: str | None = None,
    test: str | Path | None = None,
    config: RunConfig | str | Path | Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Run:
    """Multi-property pre-training (``tlsearch mpt pretrain``; paper Sec. 2.6).

    Args:
        datasets: property name -> data spec (``{"GV": "gv.json.gz", "DC": "matminer:DC"}``).
        exclude_target: the FT target: all its values are masked.
        exclude_data: the target's FT and test sets: matching structures leave the corpus.
        head_layers: MLP layers per head.
        loss_denominator: ``n_properties`` (the paper's Eq. 1, default) or ``known``.
        others: as :func:`train`.
    """
    from tlsearch.training.config import merge_overrides
    from tlsearch.transfer.run import mpt_pretrain_run  # torch: loaded when a run starts

    if not datasets:
        raise ValueError("mpt_pretrain needs datasets {name: spec, ...}")
    fields = _run_fields("mpt:" + "+".join(datasets), out, test, None, recipe, model, overrides)
    if loss_denominator is not None:
        fields = merge_overrides(fields, {"train": {"mpt_loss_denominator": loss_denominator}})
    cfg = run_config(config, fields)
    return _finish(
        cfg,
        lambda c: mpt_pretrain_run(
            c, dict(datasets), exclude=exclude_target, exclude_specs=list(exclude_data),
            head_layers=head_layers, progress=progress,
        ),
    )  # fmt: skip
