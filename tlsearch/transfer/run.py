"""Pre-train, fine-tune (any strategy, any FT sampling), scratch and MPT: one training path.

Every run here is :func:`tlsearch.training.run.train_run` with three hooks: which structures
form the training set (a PT subset, an FT sample), which model is trained (a fresh ALIGNN, a
pre-trained one prepared by a strategy, a multi-property model), and the provenance recorded in
``model.pt`` and ``metrics.json``. So scratch, PT, FT and MPT share the loss, optimiser,
schedule, early stopping and outputs, and their results compare like with like.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from tlsearch.model.alignn import ALIGNN
from tlsearch.model.backbone import Backbone, unwrap_trunk
from tlsearch.model.config import EXECUTION_FIELDS, ALIGNNConfig
from tlsearch.model.foundation import load_foundation
from tlsearch.model.multi_property import MultiPropertyALIGNN, to_finetune
from tlsearch.structures.load import load_data
from tlsearch.structures.records import LoadResult, StructureRecord
from tlsearch.training.checkpoint import (
    FORMAT,
    bundle_from_payload,
    load_payload,
    model_from_bundle,
)
from tlsearch.training.config import RunConfig
from tlsearch.training.distributed import Distributed
from tlsearch.training.resume import EpochCheckpoints
from tlsearch.training.run import PreparedData, train_run
from tlsearch.transfer.closed_form import closed_form_run
from tlsearch.transfer.frozen_trunk import frozen_trunk_form
from tlsearch.transfer.mpt_corpus import MPTCorpus, build_corpus, exclude_target
from tlsearch.transfer.names import CLOSED_FORM_HEADS
from tlsearch.transfer.sampling import sample_indices
from tlsearch.transfer.strategies import get_strategy, prepare_finetune

logger = logging.getLogger(__name__)


# --- pre-trained models in -------------------------------------------------------------------


def load_pretrained(source: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The PT model of a run folder, a tlsearch ``model.pt``, or an alignn checkpoint.

    alignn checkpoints are its ``{"model": state_dict}`` files (or bare state dicts); the
    architecture (widths, depths) is read off the weights.

    Returns:
        (model in eval mode on the CPU, provenance: source path, kind and the PT run's extras)

    Raises:
        FileNotFoundError: no such file/folder. ValueError: a file that fits no known format,
            or whose weights do not fit the architecture (the message says which keys/shapes).
    """
    path = Path(source)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"pre-trained model {path} does not exist")
    payload = load_payload(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        model, bundle = model_from_bundle(*bundle_from_payload(payload, path))
        info = {"pt_checkpoint": str(path), "pt_format": "tlsearch", **bundle.extra}
        if not isinstance(model, Backbone | MultiPropertyALIGNN):
            raise ValueError(
                f"{path} holds a {type(model).__name__}; fine-tune from a pre-trained backbone "
                "(e.g. an ALIGNN) or multi-property model"
            )
        return model, info
    model = ALIGNN.from_pretrained(payload)
    return model, {"pt_checkpoint": str(path), "pt_format": "alignn"}


# --- pool selection --------------------------------------------------------------------------


def random_subset(size: int | None, seed: int):
    """A pool selector: ``size`` structures drawn uniformly at random (all when None)."""

    def select(data: PreparedData) -> np.ndarray:
        n = len(data.store)
        if size is None or size >= n:
            if size is not None and size > n:
                logger.warning("asked for %d structures, the data has %d: using all", size, n)
            return np.arange(n)
        return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))

    return select


def ft_sample(size: int | None, method: str, seed: int):
    """A pool selector: an FT training set of ``size`` by ``random``/``weighted``/``uniform``."""

    def select(data: PreparedData) -> np.ndarray:
        n = len(data.store)
        if size is None or size >= n:
            return np.arange(n)
        if data.targets is None:
            raise ValueError("FT sampling needs targets")
        return sample_indices(data.targets[:, 0], size, method=method, seed=seed)

    return select


# --- runs ------------------------------------------------------------------------------------


def pretrain_run(
    run: RunConfig,
    size: int | None = None,
    progress: bool = True,
    distributed: Distributed | None = None,
    checkpoints: EpochCheckpoints | None = None,
) -> dict[str, Any]:
    """Pre-train on ``run.data`` (optionally a random subset of ``size``, as "BG(50K)").

    The checkpoint records its provenance: source, size, seed (plus config, scaler and graph
    settings, as every ``model.pt``). ``distributed``: this process is one rank of a DDP job;
    ``checkpoints``: mid-training checkpoints (both: see
    :func:`tlsearch.training.run.train_run`).
    """
    provenance = {
        "kind": "pretrain", "pt_source": run.data, "pt_size": size, "seed": run.train.seed,
    }  # fmt: skip
    if distributed is not None:
        provenance["ddp_workers"] = distributed.world
    return train_run(
        run, progress=progress, select_pool=random_subset(size, run.train.seed),
        provenance=provenance, distributed=distributed, checkpoints=checkpoints,
    )  # fmt: skip


def finetune_run(
    run: RunConfig,
    pretrained: str | Path | None,
    strategy: str = "unfreeze_all",
    size: int | None = None,
    sampling: str = "random",
    freeze_batchnorm_stats: bool = True,
    progress: bool = True,
    checkpoints: EpochCheckpoints | None = None,
    foundation: str | None = None,
    freeze_first: int | None = None,
    features: str = "last",
) -> dict[str, Any]:
    """Fine-tune a PT model on ``run.data`` with ``strategy``; scratch when ``pretrained`` is None.

    Args:
        run: target data, test set, recipe (learning rate, seed...), output folder. Its model
            widths are replaced by the PT model's.
        pretrained: PT run folder, ``model.pt`` or alignn checkpoint; None = scratch (strategy
            must then be ``scratch``, same data path, sampling and recipe).
        strategy: an FT strategy name (:mod:`tlsearch.transfer.strategies`); from an MPT model
            the paper's recipe is used whatever is given: trunk + 2 new MLP layers + a new head,
            all trainable (Sec. 2.6), recorded as ``mpt_finetune``.
        size: FT training set size drawn from ``run.data`` (None: all of it).
        sampling: ``random``, ``weighted`` or ``uniform`` (:mod:`tlsearch.transfer.sampling`).
        freeze_batchnorm_stats: keep frozen layers' BatchNorm statistics fixed.
        checkpoints: mid-training checkpoints (:func:`tlsearch.training.run.train_run`).
        foundation: instead of ``pretrained``, a pretrained foundation model by name
            (``chgnet-0.3.0``, ``sevenn-7net-0``, ``alignn:FOLDER``...:
            :mod:`tlsearch.model.foundation`); its family's inputs replace ALIGNN graphs and
            ``run.model`` is not used. ``model.pt`` and ``metrics.json``'s ``provenance`` name
            the backbone and checkpoint (name, package version, sha256 of the weights).
        freeze_first: partial freezing: also freeze the first k trunk blocks
            (:func:`~tlsearch.transfer.strategies.prepare_finetune`); recorded in provenance.
        features: for the closed-form heads (``krr``, ``ridge``): ``last`` (the last layer's
            pooled features) or ``layers`` (every layer's, concatenated).

    With frozen layers 1-6 and fixed statistics (``last_layer``, ``new_head``...), the trunk
    is computed once and the head trains on cached features, exactly
    (:mod:`tlsearch.transfer.frozen_trunk`; ``run.train.frozen_trunk`` turns it off);
    ``metrics.json``'s ``frozen_trunk`` says whether it was used and why not.
    """
    closed_form = strategy in CLOSED_FORM_HEADS
    if not closed_form:
        get_strategy(strategy)  # unknown names fail before any work
    if pretrained is not None and foundation is not None:
        raise ValueError("give a pre-trained model or a foundation model, not both")
    if closed_form and pretrained is None and foundation is None:
        raise ValueError(f"strategy {strategy!r} needs --pretrained or --foundation")
    if features not in ("last", "layers") or (features == "layers" and not closed_form):
        raise ValueError(f"features {features!r}: last, or layers with krr / ridge")
    provenance: dict[str, Any] = {
        "kind": "finetune" if pretrained is not None or foundation is not None else "scratch",
        "strategy": strategy, "ft_size": size, "sampling": sampling, "seed": run.train.seed,
    }  # fmt: skip
    select = ft_sample(size, sampling, run.train.seed)
    if freeze_first is not None:
        provenance["freeze_first"] = freeze_first
    if closed_form:
        provenance["features"] = features
        return _closed_form(
            run, pretrained, foundation, strategy, provenance, select, progress, features
        )
    if foundation is not None:
        return _finetune_foundation(
            run, foundation, strategy, freeze_batchnorm_stats, provenance, select, progress,
            checkpoints, freeze_first,
        )  # fmt: skip
    if pretrained is None:
        if strategy != "scratch":
            raise ValueError(f"strategy {strategy!r} needs a pre-trained model (or use scratch)")
        return train_run(
            run, progress=progress, select_pool=select, provenance=provenance,
            checkpoints=checkpoints,
        )  # fmt: skip
    pt_model, info = load_pretrained(pretrained)
    provenance.update({f"pt_{k}" if not k.startswith("pt_") else k: v for k, v in info.items()})
    if isinstance(pt_model, MultiPropertyALIGNN):
        if freeze_first is not None:
            raise ValueError("freeze_first does not apply to FT from an MPT model (Sec. 2.6)")
        provenance["strategy"] = "mpt_finetune"

        def factory(cfg: RunConfig, names: list[str]) -> nn.Module:
            return to_finetune(pt_model, output_features=len(names))

    else:

        def factory(cfg: RunConfig, names: list[str]) -> nn.Module:
            return prepare_finetune(
                pt_model, strategy, freeze_batchnorm_stats=freeze_batchnorm_stats,
                output_features=len(names), freeze_first=freeze_first,
            )  # fmt: skip

    # the PT widths; the output count is the FT target's (resolved by train_run)
    widths = pt_model.config.model_dump(exclude={"output_features", *EXECUTION_FIELDS})
    model = type(pt_model.config)(**widths, kernel=run.model.kernel)  # the FT run's kernel
    run = run.model_copy(update={"model": model})
    return train_run(
        run, progress=progress, model_factory=factory, select_pool=select, provenance=provenance,
        training_form=frozen_trunk_form, checkpoints=checkpoints,
    )  # fmt: skip


def _closed_form(
    run: RunConfig,
    pretrained: str | Path | None,
    foundation: str | None,
    kind: str,
    provenance: dict[str, Any],
    select: Any,
    progress: bool,
    features: str = "last",
) -> dict[str, Any]:
    """:func:`finetune_run` with a closed-form head (:mod:`tlsearch.transfer.closed_form`)."""
    if foundation is not None:
        model, info = load_foundation(foundation)
    else:
        assert pretrained is not None
        model, info = load_pretrained(pretrained)
        info = {f"pt_{k}" if not k.startswith("pt_") else k: v for k, v in info.items()}
    provenance.update(info)
    trunk = unwrap_trunk(model)
    input_store = None if trunk.family == "alignn" else type(trunk).input_store
    return closed_form_run(
        run, trunk, kind, select, provenance, input_store, progress,  # type: ignore[arg-type]
        layers=features == "layers",
    )  # fmt: skip


def _finetune_foundation(
    run: RunConfig,
    foundation: str,
    strategy: str,
    freeze_batchnorm_stats: bool,
    provenance: dict[str, Any],
    select: Any,
    progress: bool,
    checkpoints: EpochCheckpoints | None,
    freeze_first: int | None = None,
) -> dict[str, Any]:
    """:func:`finetune_run` from a foundation model (the same training path)."""
    pt_model, info = load_foundation(foundation)
    provenance.update(info)
    if isinstance(pt_model, ALIGNN):  # alignn:FOLDER: ALIGNN graphs, the PT widths
        widths = pt_model.config.model_dump(exclude={"output_features", *EXECUTION_FIELDS})
        run = run.model_copy(update={"model": ALIGNNConfig(**widths, kernel=run.model.kernel)})
        input_store = None
    else:
        input_store = type(pt_model).input_store

    def factory(cfg: RunConfig, names: list[str]) -> nn.Module:
        return prepare_finetune(
            pt_model, strategy, freeze_batchnorm_stats=freeze_batchnorm_stats,
            output_features=len(names), freeze_first=freeze_first,
            fresh_head=not isinstance(pt_model, ALIGNN),  # a foundation model's head is new
        )  # fmt: skip

    return train_run(
        run, progress=progress, model_factory=factory, select_pool=select, provenance=provenance,
        training_form=frozen_trunk_form, checkpoints=checkpoints, input_store=input_store,
    )  # fmt: skip


def build_mpt_corpus(
    datasets: Mapping[str, str],
    exclude: str | None = None,
    exclude_specs: Sequence[str] = (),
    data_home: Path | None = None,
) -> tuple[MPTCorpus, dict[str, Any]]:
    """Load the named datasets, merge them by structure, and apply leakage control.

    Args:
        datasets: property name -> data spec (a file, ``matminer:CODE``...).
        exclude: the FT target T: every value of T is masked out.
        exclude_specs: T's FT and test sets: every structure matching one of them is removed
            from the corpus entirely (stricter than the paper, which masks T only).
    """
    loaded = {name: load_data(spec, data_home=data_home).records for name, spec in datasets.items()}
    corpus = build_corpus(loaded)
    report: dict[str, Any] = {"corpus": corpus.report()}
    if exclude is not None:
        removed: list[StructureRecord] = []
        for spec in exclude_specs:
            removed += load_data(spec, data_home=data_home, require_targets=False).records
        corpus, report["exclusion"] = exclude_target(corpus, exclude, removed)
    logger.info("MPT corpus: %s", report)
    return corpus, report


def mpt_pretrain_run(
    run: RunConfig,
    datasets: Mapping[str, str],
    exclude: str | None = None,
    exclude_specs: Sequence[str] = (),
    head_layers: int = 1,
    progress: bool = True,
    checkpoints: EpochCheckpoints | None = None,
) -> dict[str, Any]:
    """Multi-property pre-training (Sec. 2.6): one trunk, one head per property, masked L1.

    The loss is Eq. 1 with ``run.train.mpt_loss_denominator`` (``n_properties``, the paper's,
    or ``known``); early stopping and the best epoch follow the validation value of that loss
    (``early_stopping_monitor: val_loss`` in ``metrics.json``), not the MAE pooled over
    properties. ``metrics.json`` records ``loss`` and ``mpt_loss_denominator``.
    ``checkpoints``: mid-training checkpoints (:func:`tlsearch.training.run.train_run`).
    """
    corpus, report = build_mpt_corpus(datasets, exclude, exclude_specs, run.data_home)
    records = LoadResult(corpus.records, [], source="mpt:" + "+".join(corpus.properties))
    train = run.train.model_copy(update={"loss": "masked_l1"})
    run = run.model_copy(update={"data": records.source, "target": None, "train": train})

    def factory(cfg: RunConfig, names: list[str]) -> nn.Module:
        return MultiPropertyALIGNN(cfg.model, names, head_layers=head_layers)

    provenance = {
        "kind": "mpt", "mpt_datasets": dict(datasets), "mpt_excluded_target": exclude,
        "mpt_excluded_sets": list(exclude_specs), "mpt_report": report, "seed": run.train.seed,
    }  # fmt: skip
    return train_run(
        run, progress=progress, model_factory=factory, provenance=provenance,
        train_records=records, checkpoints=checkpoints,
    )  # fmt: skip
