"""Configurations (:class:`Point`) and the jobs they run: ids, data, recipes, PT jobs.

A configuration's id (:func:`config_hash`, hashed as :mod:`tlsearch.jobs.identity` says) hashes
the point, the recipe it runs with and the identity of the data it reads
(:func:`dataset_identity`: file contents, not paths), so a seed-run's ``run_id``
(``<config hash>-s<seed>``) names the same work in every attempt, retry, resume and machine,
and changes when the recipe or the data changes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tlsearch.graphs.settings import default_cache_dir
from tlsearch.jobs.config import DataRef, JobConfig, absolute_spec
from tlsearch.jobs.identity import (
    fill_fields,
    path_identity,
    recipe_hash,
    run_id,
    source_identity,
)
from tlsearch.model.config import model_identity
from tlsearch.search.plan.spec import LogUniform, PretrainSource, SearchSpec
from tlsearch.storage.uri import is_remote, join

SCRATCH = "scratch"


@dataclass(frozen=True)
class Point:
    """One configuration (a Tune trial's config, without the seed)."""

    kind: str  # scratch, finetune (from a dataset or checkpoint) or mpt
    target: str
    ft_size: int | None
    sampling: str
    lr: float
    pt_source: str | None = None
    pt_size: int | None = None
    strategy: str | None = None

    def as_config(self) -> dict[str, Any]:
        """Plain dict (the Tune trial config)."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any], spec: SearchSpec) -> Point:
        """Rebuild from a trial config; a sampled PT source fixes ``kind`` and ``pt_size``."""
        values = {k: config.get(k) for k in cls.__dataclass_fields__}
        if values["kind"] != SCRATCH:
            source = spec.source(values["pt_source"])
            values["kind"] = "mpt" if source.kind == "mpt" else "finetune"
            if source.kind != "dataset":
                values["pt_size"] = None
        values["lr"] = float(values["lr"])
        return cls(**values)

    @property
    def uses_pretraining(self) -> bool:
        return self.kind != SCRATCH


# --- axes ------------------------------------------------------------------------------------


def lr_values(spec: SearchSpec) -> list[float]:
    """The learning rates of a grid (a LogUniform range has no grid values)."""
    if isinstance(spec.lr, LogUniform):
        return []
    return list(spec.lr) if isinstance(spec.lr, list) else [float(spec.lr)]


def sources_for(spec: SearchSpec, target: str) -> list[PretrainSource]:
    """PT sources paired with ``target``.

    ``pairs: all`` skips sources named after, or drawn from, the target's own property (unless
    ``include_self``); an explicit ``pairs`` list keeps exactly its pairs.
    """
    if spec.pairs == "all":
        prop = spec.property_of(target)
        return [s for s in spec.pt_sources if spec.include_self or not _same(spec, s, prop)]
    wanted = {src for src, tgt in spec.pairs if tgt == target}
    return [s for s in spec.pt_sources if s.name in wanted]


def _same(spec: SearchSpec, source: PretrainSource, prop: str) -> bool:
    """Whether ``source`` is named after, or drawn from, property ``prop``."""
    return source.name == prop or (
        source.dataset is not None and spec.property_of(source.dataset) == prop
    )


def pt_sizes_for(spec: SearchSpec, source: PretrainSource) -> list[int | None]:
    """PT sizes that apply to ``source`` (its own ``sizes``; a checkpoint or MPT has none)."""
    if source.kind != "dataset":
        return [None]
    return list(source.sizes) if source.sizes is not None else list(spec.pt_sizes)


# --- hashes and jobs ------------------------------------------------------------------------


def config_hash(spec: SearchSpec, point: Point, base_dir: str | None = None) -> str:
    """16 hex digits naming a configuration, the recipe it runs with and the data it reads
    (not the seed).

    ``base_dir``: the folder relative data paths are resolved against (default: the current
    one; trials get a spec whose paths are absolute, see :func:`resolve_datasets`).
    """
    recipe: dict[str, Any] = {
        "point": point.as_config(),
        "train": spec.train,
        "model": model_identity(spec.model),  # the kernel is not part of it
        "graphs": spec.graphs,
        "datasets": [
            [name, size, dataset_identity(spec, name, size, base_dir)]
            for name, size in data_used(spec, point)
        ],
    }
    if point.uses_pretraining:
        recipe["source"] = spec.source(str(point.pt_source)).model_dump()
        recipe["pretrain"] = spec.pretrain.model_dump(exclude={"resources"})
    return recipe_hash(recipe)


def run_id_for(spec: SearchSpec, point: Point, seed: int, base_dir: str | None = None) -> str:
    """The seed-run's id and file name: ``<config hash>-s<seed>``."""
    return run_id(config_hash(spec, point, base_dir), seed)


def data_used(spec: SearchSpec, point: Point) -> list[tuple[str, int | None]]:
    """``(dataset, size)`` of every dataset a configuration reads: its FT target at the FT
    size, its PT source's dataset at the PT size, an MPT mix's datasets whole."""
    used = {(point.target, point.ft_size)}
    if point.uses_pretraining:
        source = spec.source(str(point.pt_source))
        size = point.pt_size if source.kind == "dataset" else None
        used |= {(name, size) for name in pt_datasets(spec, point.pt_source)}
    return sorted(used, key=lambda item: (item[0], -1 if item[1] is None else item[1]))


# --- data identity ----------------------------------------------------------------------------


def dataset_identity(
    spec: SearchSpec, name: str, size: int | None, base_dir: str | None = None
) -> dict[str, Any]:
    """What dataset ``name`` at ``size`` is, the same on every machine holding the same files.

    The dataset's fields (but its free-text ``note``), with ``data``/``test`` as
    :func:`source_identity` and a ``data_home`` file (a local copy of a download) as its
    content hash: ``vars`` and the files they point at are part of it, where they live is not.
    """
    ds = spec.datasets[name]
    values = {**spec.vars, "size": "" if size is None else size}
    identity = ds.model_dump(exclude={"note", "data", "test", "data_home"})
    identity["data"] = source_identity(ds.data, values, base_dir)
    identity["test"] = source_identity(ds.test, values, base_dir)
    home = absolute_spec(ds.data_home, base_dir or os.getcwd()) if ds.data_home else None
    identity["data_home"] = path_identity(Path(home)) if home and Path(home).is_file() else None
    return identity


def resolve_datasets(spec: SearchSpec, base_dir: str) -> SearchSpec:
    """``spec`` with its datasets' ``vars`` filled in and their local paths absolute.

    Trials get this spec: they run in folders of their own, where relative paths (and so
    :func:`config_hash`'s data identity) would not resolve. Jobs and ids are unchanged.
    """
    datasets = {}
    for name, ds in spec.datasets.items():
        update: dict[str, Any] = {"data": absolute_spec(fill_fields(ds.data, spec.vars), base_dir)}
        if ds.test is not None:
            update["test"] = absolute_spec(fill_fields(ds.test, spec.vars), base_dir)
        if ds.data_home is not None:
            update["data_home"] = absolute_spec(ds.data_home, base_dir)
        datasets[name] = ds.model_copy(update=update)
    return spec.model_copy(update={"datasets": datasets})


def source_datasets(spec: SearchSpec, point: Point) -> set[str]:
    """The datasets a configuration's PT source reads (none for scratch or a checkpoint)."""
    if not point.uses_pretraining:
        return set()
    return pt_datasets(spec, point.pt_source)


def pt_datasets(spec: SearchSpec, source_name: str | None) -> set[str]:
    """The datasets PT source ``source_name`` reads."""
    source = spec.source(str(source_name))
    return {source.dataset} if source.dataset else set(source.mpt or [])


def provenance_columns(spec: SearchSpec, datasets: set[str]) -> dict[str, Any]:
    """The row's ``rehearsal`` flag and the notes of the datasets it read (``data_note``)."""
    notes = [f"{n}: {spec.datasets[n].note}" for n in sorted(datasets) if spec.datasets[n].note]
    return {"rehearsal": spec.rehearsal, "data_note": "; ".join(notes) or None}


def data_ref(
    spec: SearchSpec, name: str, size: int | None, seed: int, sampling: str, base_dir: str
) -> DataRef:
    """Dataset ``name`` resolved for one run: placeholders filled, paths made absolute."""
    ds = spec.datasets[name]
    values = {**spec.vars, "size": "" if size is None else size, "trial": seed + 1, "seed": seed}
    files_sized = "{size}" in ds.data
    return DataRef(
        name=name,
        data=absolute_spec(ds.data.format(**values), base_dir),
        test=absolute_spec(ds.test.format(**values), base_dir) if ds.test else None,
        test_fraction=ds.test_fraction,
        split_seed=ds.split_seed,
        target=ds.target,
        data_home=absolute_spec(ds.data_home, base_dir) if ds.data_home else None,
        size=None if files_sized else size,
        sampling=sampling,
        allow_test_overlap=ds.allow_test_overlap,
    )


def _recipe(
    spec: SearchSpec, lr: float | None, extra: dict[str, Any], dataset: str | None = None
) -> dict[str, Any]:
    train = {"num_threads": max(1, int(spec.resources.cpu)), **spec.train, **extra}
    if lr is not None:
        train["learning_rate"] = lr
    normalise = spec.datasets[dataset].normalise if dataset else None
    if normalise is not None:
        train["target_normalisation"] = normalise
    return train


def build_job(
    spec: SearchSpec, point: Point, seed: int, base_dir: str, pretrained: str | None = None
) -> JobConfig:
    """The job of one seed-run (``pretrained``: the PT checkpoint for transfer kinds)."""
    kind = "scratch" if point.kind == SCRATCH else "finetune"
    return JobConfig(
        kind=kind,
        seed=seed,
        data=data_ref(spec, point.target, point.ft_size, seed, point.sampling, base_dir),
        pretrained=pretrained,
        strategy=point.strategy,
        train=_recipe(spec, point.lr, {}, point.target),
        model=spec.model,
        graphs=spec.graphs,
        cache_dir=graph_cache_dir(spec),
    )


def pretrain_job(spec: SearchSpec, point: Point, seed: int, base_dir: str) -> JobConfig | None:
    """The PT job a transfer configuration needs for ``seed`` (None: a checkpoint source)."""
    if not point.uses_pretraining:
        return None
    source = spec.source(str(point.pt_source))
    if source.kind == "checkpoint":
        return None
    pt = spec.pretrain
    pt_seed = seed if pt.seed_mode == "per_seed" else pt.seed
    common = {
        "seed": pt_seed,
        "train": _recipe(spec, None, pt.train, source.dataset),
        "model": spec.model,
        "graphs": spec.graphs,
        "cache_dir": graph_cache_dir(spec),
        "num_workers": pt.num_workers,
        "cpus_per_worker": pt.cpus_per_worker,
        "gpus_per_worker": pt.gpus_per_worker,
        "label": source.name,
        "pt_size": point.pt_size,
    }
    if source.kind == "dataset":
        ref = data_ref(spec, str(source.dataset), point.pt_size, pt_seed, "random", base_dir)
        return JobConfig(kind="pretrain", data=ref, **common)
    refs = [  # named by property: the MPT model has one head per property
        data_ref(spec, d, None, pt_seed, "random", base_dir).model_copy(
            update={"name": spec.property_of(d)}
        )
        for d in source.mpt or []
    ]
    prop = spec.property_of(point.target)
    masked = source.exclude_target and prop in {ref.name for ref in refs}
    excluded = prop if masked else None
    return JobConfig(kind="mpt_pretrain", mpt_data=refs, excluded_target=excluded, **common)


def graph_cache_dir(spec: SearchSpec) -> str | None:
    """The one graph cache every trial shares: ``<storage>/graphs`` for local storage."""
    if spec.graph_cache != "auto":
        return spec.graph_cache
    return str(default_cache_dir()) if is_remote(spec.storage) else join(spec.storage, "graphs")
