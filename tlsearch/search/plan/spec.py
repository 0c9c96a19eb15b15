"""The search spec: what a ``search_spaces/*.yaml`` file may say, typed and validated.

A spec names datasets, then the axes of the search (PT sources, PT sizes, FT targets, FT sizes,
FT strategies, sampling methods, learning rate), the training recipe, the seeds, the search
algorithm, resources and storage. :mod:`tlsearch.search.plan.compile` turns it into Tune
experiments; ``search_spaces/README.md`` documents every key with examples. The parts live in
:mod:`tlsearch.search.plan.spec_parts`.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from tlsearch.search.plan.spec_parts import (
    NAME_PATTERN,
    PLACEHOLDERS,
    DatasetSpec,
    LogUniform,
    PretrainSource,
    PretrainSpec,
    Resources,
    Sampling,
    SearchAlgorithm,
    Strategy,
    StrictModel,
    TestingHooks,
)
from tlsearch.yamlfile import read_yaml_mapping

__all__ = [
    "DatasetSpec",
    "LogUniform",
    "PretrainSource",
    "PretrainSpec",
    "Resources",
    "SearchAlgorithm",
    "SearchSpec",
    "load_spec",
]


class SearchSpec(StrictModel):
    """A whole search; see ``search_spaces/README.md`` for every key with examples."""

    name: str
    description: str = ""
    storage: str = "./results"
    graph_cache: str | None = "auto"
    vars: dict[str, str] = Field(default_factory=dict)
    datasets: dict[str, DatasetSpec]
    targets: list[str] = Field(min_length=1)
    ft_sizes: list[PositiveInt | None] = Field(default_factory=lambda: [None], min_length=1)
    pt_sources: list[PretrainSource] = Field(default_factory=list)
    pt_sizes: list[PositiveInt | None] = Field(default_factory=lambda: [None], min_length=1)
    pairs: Literal["all"] | list[tuple[str, str]] = "all"
    include_self: bool = False
    scratch: bool | None = None
    strategies: list[Strategy] = Field(default_factory=lambda: ["unfreeze_all"], min_length=1)
    sampling: list[Sampling] = Field(default_factory=lambda: ["random"], min_length=1)
    lr: PositiveFloat | list[PositiveFloat] | LogUniform = 1e-3
    train: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    graphs: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    search: SearchAlgorithm = Field(default_factory=SearchAlgorithm)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: PositiveInt | None = None
    max_failures: int = Field(2, ge=0)
    #: Seed-runs: save the training state every this many epochs (``<search>/resume/``) so a
    #: retried trial resumes there; None: never. PT jobs: ``pretrain.checkpoint_every``.
    checkpoint_every: PositiveInt | None = None
    tensorboard: bool = False
    pretrain: PretrainSpec = Field(default_factory=PretrainSpec)
    testing: TestingHooks = Field(default_factory=TestingHooks)
    #: Set by ``tlsearch search --rehearse`` (tiny model, 2 epochs: rows are marked and the
    #: analysis keeps them apart from real results) and ``--offline`` (local files only).
    rehearsal: bool = False
    offline: bool = False

    @field_validator("datasets", mode="before")
    @classmethod
    def _dataset_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"data": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("pt_sources", mode="before")
    @classmethod
    def _source_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"dataset": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"name {value!r} must be letters, digits, '.', '_' or '-'")
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or min(value) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, got {value}")
        return value

    @field_validator("train")
    @classmethod
    def _train(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, why in (("seed", "set 'seeds'"), ("learning_rate", "set 'lr'")):
            if key in value:
                raise ValueError(f"train.{key} is not allowed here: {why} instead")
        return check_overrides(value, "train")

    @field_validator("model")
    @classmethod
    def _model(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_overrides(value, "model")

    @field_validator("graphs")
    @classmethod
    def _graphs(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_overrides(value, "graphs")

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpec:
        check_overrides(self.pretrain.train, "pretrain.train")
        self._check_references()
        if self.scratch is None:
            self.scratch = not self.pt_sources
        if not self.scratch and not self.pt_sources:
            raise ValueError("nothing to run: set scratch: true or give pt_sources")
        names = [s.name for s in self.pt_sources]
        if len(set(names)) != len(names):
            raise ValueError(f"pt_sources names must be distinct, got {names}")
        if "pt_source" in self.search.optuna_axes and any(s.sizes for s in self.pt_sources):
            raise ValueError(
                "pt_sources[].sizes cannot be used when Optuna samples pt_source; "
                "set pt_sizes instead"
            )
        if self.search.prefilter is not None and not self.pt_sources:
            raise ValueError("search.prefilter ranks PT sources: give pt_sources")
        if self.search.algorithm == "grid" and isinstance(self.lr, LogUniform):
            raise ValueError(
                "lr: a loguniform range needs search.algorithm optuna; grid takes a value or a list"
            )
        sized = [t for t in self.targets if "{size}" in self.datasets[t].data]
        if sized and None in self.ft_sizes:
            raise ValueError(
                f"ft_sizes: null (all) is not possible for {sized}, whose files "
                "are named by {size}; list the sizes"
            )
        for name, ds in self.datasets.items():
            for field_name in ("data", "test"):
                check_placeholders(
                    getattr(ds, field_name), f"datasets.{name}.{field_name}", self.vars
                )
        return self

    def _check_references(self) -> None:
        known = set(self.datasets)
        refs = [(f"targets[{i}]", t) for i, t in enumerate(self.targets)]
        for i, source in enumerate(self.pt_sources):
            if source.dataset is not None:
                refs.append((f"pt_sources[{i}].dataset", source.dataset))
            refs += [(f"pt_sources[{i}].mpt", d) for d in source.mpt or []]
        if self.pairs != "all":
            sources = {s.name for s in self.pt_sources}
            for i, (src, tgt) in enumerate(self.pairs):
                refs.append((f"pairs[{i}] target", tgt))
                if src not in sources:
                    raise ValueError(
                        f"pairs[{i}]: unknown PT source {src!r}; defined: "
                        f"{', '.join(sorted(sources)) or 'none'}"
                    )
        for where, name in refs:
            if name not in known:
                raise ValueError(
                    f"{where}: unknown dataset {name!r}; defined: {', '.join(sorted(known))}"
                )

    def property_of(self, dataset: str) -> str:
        """The property dataset ``dataset`` measures (its ``property``, else its name)."""
        return self.datasets[dataset].property or dataset

    def source(self, name: str) -> PretrainSource:
        """The PT source called ``name``."""
        for source in self.pt_sources:
            if source.name == name:
                return source
        raise KeyError(f"no PT source {name!r}")


def check_overrides(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate ``train``/``model``/``graphs`` overrides against the core's config classes.

    Raises:
        ValueError: naming the key and, for unknown keys, the allowed ones.
    """
    from tlsearch.graphs.settings import GraphSettings
    from tlsearch.model.config import ALIGNNConfig
    from tlsearch.training.config import TrainConfig

    kind = where.rsplit(".", 1)[-1]
    cls = {"train": TrainConfig, "model": ALIGNNConfig, "graphs": GraphSettings}[kind]
    unknown = sorted(set(values) - set(cls.model_fields))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {unknown}; allowed: {', '.join(cls.model_fields)}"
        )
    try:
        cls.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(problems) from None
    return values


def check_placeholders(text: str | None, where: str, variables: dict[str, str]) -> None:
    """Raise ValueError when ``text`` uses a ``{name}`` that is neither a placeholder nor a var."""
    if text is None:
        return
    allowed = set(PLACEHOLDERS) | set(variables)
    for _, field_name, _, _ in string.Formatter().parse(text):
        if field_name is not None and field_name not in allowed:
            raise ValueError(
                f"{where}: unknown placeholder {{{field_name}}}; allowed: "
                f"{', '.join(sorted(allowed))}"
            )


def load_spec(path: Path | str, overrides: dict[str, Any] | None = None) -> SearchSpec:
    """Read and validate a spec YAML; ``overrides`` (top-level keys) win over the file."""
    data = read_yaml_mapping(path, "search spec", allow_empty=False)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return SearchSpec.model_validate(data)
