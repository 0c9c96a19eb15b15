"""Frozen trunk computed once: fine-tune the head on cached pooled trunk features (exact).

With frozen batch-norm statistics (the default, see :mod:`tlsearch.transfer.strategies`), an
FT strategy whose trainable parameters all come after the backbone's trunk blocks
(:mod:`tlsearch.model.backbone`; ALIGNN: after its readout, paper layer 6: ``last_layer``,
``new_head``, ``new_head_freeze_6`` and any other that freezes layers 1-6) sees, for a
structure, the same trunk output ``features(batch)`` in every epoch: every trunk module runs in
eval mode (fixed running statistics), ALIGNN has no dropout, and message passing never crosses
structures, so the pooled features of a structure do not depend on the batch it is in. They are
computed once per (PT trunk, dataset) and only ``model.head`` trains:

- the cut is after pooling, so one (width,) float32 row per structure is cached, and a batch
  of features is a gather of rows; :class:`FeatureStore` stands in for the graph store in the
  same :class:`~tlsearch.training.loop.GraphLoader`, so the batches (order, sizes, merged last
  batch) are those of the graph path and the head's BatchNorm sees the same batch statistics;
- :class:`HeadOnly` (what :func:`~tlsearch.training.loop.fit` trains: the same loop, optimiser,
  schedule, early stopping) wraps the whole FT model, so its ``state_dict`` is the model's: the
  best weights are restored into it and ``model.pt`` is the full model (trunk + trained head),
  which ``tlsearch predict`` loads unchanged; validation and test predictions run the head on
  cached features too (:class:`FrozenTrunkForm`);
- the cache (:class:`FeatureCache`): ``<cache_dir>/frozen_trunk/<key>.npz`` holding
  ``features`` (n, width) and ``done`` (n,) for the graph store's n structures, rows computed
  on demand (an FT sample computes only its own structures); ``key`` hashes the trunk's weights
  and buffers (everything before the cut: so it changes with the PT checkpoint's content, not
  with a new head), the graph cache key (the structures and graph settings), the device type
  and this module's format; entries are written atomically under a file lock and the least
  recently used ones are removed beyond ``train.frozen_trunk.max_cache_mb``.

Where the cached path would not be exact (a trainable parameter before the cut, trainable
frozen-layer batch-norm statistics, dropout, a batch-norm without running statistics, a module
this module does not know in the trunk, ``train.frozen_trunk.enabled: false``), the run takes
the graph path and ``metrics.json``'s ``frozen_trunk`` says why. Its ``train_seconds`` include
computing the features; ``frozen_trunk.cache_hit`` is true when every training and validation
feature came from the cache (an earlier seed-run).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from tlsearch.graphs.store import dataset_key
from tlsearch.model.backbone import Backbone, unwrap_trunk
from tlsearch.model.heads import HeadedBackbone
from tlsearch.model.layers import RBFExpansion
from tlsearch.model.pooling import AvgPooling
from tlsearch.model.registry import FAMILIES, family
from tlsearch.storage.locks import file_lock
from tlsearch.training.batches import GraphLoader, batch_chunks
from tlsearch.training.run import GraphForm
from tlsearch.transfer.strategies import install_frozen_eval, layer_number

if TYPE_CHECKING:
    from tlsearch.graphs.store import GraphStore
    from tlsearch.training.config import RunConfig
    from tlsearch.training.run import PreparedData, TrainingForm

logger = logging.getLogger(__name__)

#: Bump when what is cached, or how, changes: old entries are then never read.
FEATURE_FORMAT = 1
_FROZEN_EVAL_FLAG = "_tlsearch_frozen_eval"
#: Parameter-less trunk modules whose forward does not depend on training mode (ALIGNN's; a
#: family lists its own in ``stateless_modules``, else it takes the graph path).
_STATELESS_SAFE = (RBFExpansion, AvgPooling, nn.Sequential, nn.ModuleList, nn.SiLU, nn.Identity)


# --- when the cached path is exact ------------------------------------------------------------


def cut_of(model: nn.Module) -> str:
    """The cut: the name of the backbone's last trunk block (ALIGNN: ``readout``)."""
    return unwrap_trunk(model).trunk_blocks()[-1][0]


def _before_cut(model: nn.Module, name: str) -> bool:
    """True for a parameter/buffer/module name of ``model`` in a trunk block (ALIGNN: paper
    layers 1-6)."""
    return layer_number(model, name) <= len(unwrap_trunk(model).trunk_blocks())


def inexact_reason(model: nn.Module) -> str | None:
    """Why training ``model``'s head on cached trunk features would differ from training
    ``model``; None when it is exact.

    Exact when the model is a registered backbone family's own class, bare or under a
    :class:`HeadedBackbone` (the ``features``/``head`` split is the interface's; a subclass
    might move it), no trunk parameter (ALIGNN: layers 1-6) trains, frozen modules run with
    fixed batch-norm statistics (``freeze_batchnorm_stats=True``), every trunk batch norm
    tracks running statistics, no dropout is active anywhere (the head's would draw other
    random numbers), and every parameter-less trunk module is one known not to depend on
    training mode (a module with parameters, all frozen, runs in eval mode on both paths).
    """
    if not _known_split(model):
        name = type(model).__name__
        return f"{name} is not a backbone or HeadedBackbone (unknown trunk/head cut)"
    trainable = [
        n for n, p in model.named_parameters() if p.requires_grad and _before_cut(model, n)
    ]
    if trainable:
        shown = ", ".join(trainable[:3]) + (", ..." if len(trainable) > 3 else "")
        return f"parameters before the {cut_of(model)} train ({shown})"
    if not getattr(model, _FROZEN_EVAL_FLAG, False):
        return "batch-norm statistics of frozen layers train (freeze_batchnorm_stats=False)"
    for name, module in model.named_modules():
        if isinstance(module, _DropoutNd) and module.p > 0:
            return f"dropout {name} (p={module.p}) is active in training"
        if not name or not _before_cut(model, name):
            continue
        if isinstance(module, _BatchNorm) and not (module.affine and module.track_running_stats):
            return f"batch norm {name} normalises with batch statistics even when frozen"
        # a subtree with (all frozen) parameters runs in eval mode in both paths
        has_params = any(True for _ in module.parameters())
        safe = _STATELESS_SAFE + getattr(unwrap_trunk(model), "stateless_modules", ())
        if not has_params and not isinstance(module, safe) and not _no_op_dropout(module):
            return f"trunk module {name} ({type(module).__name__}) may depend on training mode"
    return None


def _no_op_dropout(module: nn.Module) -> bool:
    """A dropout of probability 0 (the same in training and eval mode)."""
    return isinstance(module, _DropoutNd) and module.p == 0


def _known_split(model: nn.Module) -> bool:
    """A registered family's own class (exact type: a subclass may change the split), bare or
    under a :class:`HeadedBackbone`."""
    trunk = model.trunk if type(model) is HeadedBackbone else model  # the backbone itself
    if not isinstance(trunk, Backbone) or trunk.family not in FAMILIES:
        return False
    return type(trunk) is family(trunk.family)


def trunk_digest(model: nn.Module) -> str:
    """Hash of everything the trunk computes with: architecture and every weight and buffer
    before the cut (so a new PT checkpoint changes it; a new head does not)."""
    trunk = unwrap_trunk(model)
    h = hashlib.blake2b(digest_size=20)
    config = dict(trunk.describe()["config"])  # without the kernel (an execution setting)
    config.pop("output_features", None)
    h.update(f"format={FEATURE_FORMAT};cut={cut_of(trunk)};{sorted(config.items())}".encode())
    kernel = getattr(getattr(trunk, "config", None), "kernel", "auto")
    if kernel != "auto":  # another kernel rounds otherwise (auto: keys unchanged)
        h.update(f";kernel={kernel}".encode())
    for name, tensor in sorted(trunk.state_dict().items()):
        if not _before_cut(trunk, name):
            continue
        value = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name};{value.dtype};{tuple(value.shape)}".encode())
        h.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return h.hexdigest()


def graph_key(store: GraphStore, records: Sequence[Any]) -> str:
    """The graph cache key of a store (its folder's name; computed for an in-memory store)."""
    return store.path.name if store.path is not None else dataset_key(records, store.settings)


# --- features as a batch form -----------------------------------------------------------------


@dataclass
class FeatureBatch:
    """Pooled trunk features of ``num_graphs`` structures: what :class:`HeadOnly` reads.

    Has the attributes the training loop uses from a :class:`~tlsearch.graphs.batch.GraphBatch`
    (``num_graphs``, ``num_nodes``, ``targets``, ``target_mask``, ``ids``, ``to``).
    """

    features: Tensor
    num_graphs: int
    num_nodes: int = 0
    targets: Tensor | None = None
    target_mask: Tensor | None = None
    ids: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FeatureBatch:
        """Every tensor on ``device``; returns a new batch."""
        kwargs = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                value = value.to(device, non_blocking=non_blocking)
            kwargs[f.name] = value
        return FeatureBatch(**kwargs)


class FeatureStore:
    """Cached features aligned with a graph store; ``collate`` gathers rows into a batch.

    Args:
        features: (len(store), width) float32; only rows of structures in use need be filled.
        store: the graph store the rows belong to (ids, atom counts).
    """

    def __init__(self, features: np.ndarray, store: GraphStore) -> None:
        if features.shape[0] != len(store):
            raise ValueError(f"{features.shape[0]} feature rows for {len(store)} structures")
        self.features = features
        self.ids = store.ids
        self._atoms = store.num_atoms()

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, indices: Sequence[int]) -> FeatureBatch:
        """The features of the structures at ``indices`` (targets left None)."""
        idx = np.asarray(indices, dtype=np.int64)
        return FeatureBatch(
            features=torch.from_numpy(np.ascontiguousarray(self.features[idx])),
            num_graphs=int(idx.size),
            num_nodes=int(self._atoms[idx].sum()),
            ids=[self.ids[int(i)] for i in idx],
        )


class HeadOnly(nn.Module):
    """The FT model's head on cached features: ``model.head(batch.features)``.

    ``model`` is a submodule (parameters shared, ``state_dict`` keys ``model.*``), so the
    optimiser sees the model's parameters (only trainable ones are optimised) and restoring a
    best ``state_dict`` restores the model. Frozen modules run in eval mode whenever it
    trains, as the model's own hook does (:func:`install_frozen_eval`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        install_frozen_eval(self, enabled=True)

    def forward(self, batch: FeatureBatch) -> Tensor:
        return self.model.head(batch.features)


@torch.no_grad()
def compute_features(
    model: nn.Module,
    store: GraphStore,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """(len(indices), width) float32 pooled trunk features (the backbone's ``features``),
    the trunk in eval mode. Module modes are restored afterwards.
    """
    trunk = unwrap_trunk(model)
    modes = [(module, module.training) for module in model.modules()]
    model.to(device).eval()
    try:
        rows = [
            trunk.features(store.collate(chunk.tolist()).to(device)).float().cpu().numpy()
            for chunk in batch_chunks(np.asarray(indices, dtype=np.int64), batch_size)
        ]
    finally:
        for module, training in modes:
            module.training = training
    width = trunk.feature_width
    return np.concatenate(rows) if rows else np.zeros((0, width), np.float32)


# --- the cache --------------------------------------------------------------------------------


@dataclass
class Filled:
    """Rows of one dataset's features: the (n, width) array, a done mask, and counts."""

    features: np.ndarray
    done: np.ndarray
    computed: int = 0
    reused: int = 0


Compute = Callable[[np.ndarray], np.ndarray]


class FeatureCache:
    """Per-structure features on disk (``root``; None: nothing kept), bounded by LRU.

    Args:
        root: the cache folder (``<cache_dir>/frozen_trunk``) or None.
        max_bytes: total size of the entries kept (the entry in use is never removed).
    """

    def __init__(self, root: Path | None, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def fill(self, key: str, filled: Filled, indices: np.ndarray, compute: Compute) -> None:
        """Make ``filled.done[indices]`` true: read the entry, compute what is missing, write it.

        Concurrent runs on the same entry wait for each other (a file lock), so a
        second seed-run reuses what the first computed.
        """
        if self.root is None:
            self._compute_missing(filled, indices, compute)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{key}.npz"
        with file_lock(self.root / f"{key}.lock"):
            self._merge_entry(path, filled)
            if self._compute_missing(filled, indices, compute):
                self._write(path, filled)
            elif path.exists():
                os.utime(path)  # recently used
        self._prune(keep=path)

    @staticmethod
    def _compute_missing(filled: Filled, indices: np.ndarray, compute: Compute) -> int:
        wanted = np.unique(np.asarray(indices, dtype=np.int64))
        missing = wanted[~filled.done[wanted]]
        filled.reused += int(wanted.size - missing.size)
        if missing.size:
            filled.features[missing] = compute(missing)
            filled.done[missing] = True
            filled.computed += int(missing.size)
        return int(missing.size)

    @staticmethod
    def _merge_entry(path: Path, filled: Filled) -> None:
        """Copy the entry's computed rows into ``filled`` (a mismatched entry is ignored)."""
        if not path.exists():
            return
        try:
            with np.load(path) as entry:
                features, done = entry["features"], entry["done"].astype(bool)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("frozen-trunk cache entry %s unreadable (%s): recomputing", path, exc)
            return
        if features.shape != filled.features.shape or done.shape != filled.done.shape:
            logger.warning("frozen-trunk cache entry %s has another shape: recomputing", path)
            return
        new = done & ~filled.done
        filled.features[new] = features[new]
        filled.done |= done

    @staticmethod
    def _write(path: Path, filled: Filled) -> None:
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as handle:
                np.savez(handle, features=filled.features, done=filled.done)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _prune(self, keep: Path) -> None:
        """Remove the least recently used entries until the rest fit in ``max_bytes``."""
        assert self.root is not None
        with file_lock(self.root / ".prune.lock"):
            entries = []
            for path in self.root.glob("*.npz"):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                entries.append((stat.st_mtime, stat.st_size, path))
            total = sum(size for _, size, _ in entries)
            for _, size, path in sorted(entries):
                if total <= self.max_bytes:
                    break
                if path == keep:
                    continue
                path.unlink(missing_ok=True)
                total -= size
                logger.info("frozen-trunk cache: removed %s (over the size bound)", path.name)


# --- the training form ------------------------------------------------------------------------


class FrozenTrunkForm:
    """A :class:`~tlsearch.training.run.TrainingForm`: :class:`HeadOnly` on cached features.

    ``info`` (``metrics.json``'s ``frozen_trunk``): ``used``, ``cut``, ``cache`` (``disk`` or
    ``memory``), ``cache_hit`` (every training/validation feature was cached before this
    run), ``feature_seconds`` (training + validation features; inside ``train_seconds``) and
    per part (``training``, ``test``) the structures computed and reused and the seconds.
    """

    def __init__(self, model: nn.Module, cache: FeatureCache, device: torch.device) -> None:
        self.model = model
        self.module = HeadOnly(model)
        self.cache = cache
        self.device = device
        self.trunk = trunk_digest(model)
        self._filled: dict[int, tuple[str, Filled]] = {}  # id(store) -> (part, rows)
        self.info: dict[str, Any] = {
            "used": True, "cut": cut_of(model),
            "cache": "disk" if cache.root is not None else "memory",
            "cache_hit": None, "feature_seconds": 0.0, "trunk_key": self.trunk, "parts": {},
        }  # fmt: skip

    def loader(
        self,
        data: PreparedData,
        indices: np.ndarray,
        targets: np.ndarray | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> GraphLoader:
        """A :class:`GraphLoader` over the cached features of ``data`` (computed if missing)."""
        features = self._features(data, np.asarray(indices, dtype=np.int64), batch_size)
        store = FeatureStore(features, data.store)
        return GraphLoader(store, indices, targets, batch_size, shuffle=shuffle, seed=seed)

    def _features(self, data: PreparedData, indices: np.ndarray, batch_size: int) -> np.ndarray:
        part, filled = self._rows(data)
        start = time.perf_counter()
        wanted = np.unique(indices)
        if not filled.done[wanted].all():
            key = self._key(data)

            def compute(missing: np.ndarray) -> np.ndarray:
                return compute_features(self.model, data.store, missing, batch_size, self.device)

            self.cache.fill(key, filled, wanted, compute)
        else:
            filled.reused += int(wanted.size)
        seconds = time.perf_counter() - start
        stats = self.info["parts"].setdefault(part, {"computed": 0, "reused": 0, "seconds": 0.0})
        stats.update(computed=filled.computed, reused=filled.reused)
        stats["seconds"] += seconds
        if part == "training":
            self.info["feature_seconds"] = stats["seconds"]
            self.info["cache_hit"] = filled.computed == 0
        logger.info(
            "frozen trunk (%s): %d structures' features, %d computed so far, %d reused (%.2f s)",
            part, wanted.size, filled.computed, filled.reused, seconds,
        )  # fmt: skip
        return filled.features

    def _rows(self, data: PreparedData) -> tuple[str, Filled]:
        """This dataset's rows; the first dataset seen is the training one, later ones test."""
        entry = self._filled.get(id(data.store))
        if entry is None:
            part = "training" if not self._filled else "test"
            width = unwrap_trunk(self.model).feature_width
            n = len(data.store)
            filled = Filled(np.zeros((n, width), np.float32), np.zeros(n, dtype=bool))
            entry = self._filled[id(data.store)] = (part, filled)
        return entry

    def _key(self, data: PreparedData) -> str:
        return feature_key(self.trunk, data, self.device)


def feature_key(trunk: str, data: PreparedData, device: torch.device) -> str:
    """The cache entry of a trunk (:func:`trunk_digest`) on a dataset's graphs and device type."""
    h = hashlib.blake2b(digest_size=20)
    graphs = graph_key(data.store, data.loaded.records)
    h.update(f"trunk={trunk};graphs={graphs};device={device.type}".encode())
    return h.hexdigest()


def frozen_trunk_form(model: nn.Module, cfg: RunConfig, device: torch.device) -> TrainingForm:
    """The :data:`~tlsearch.training.run.FormFactory` of fine-tuning runs.

    :class:`FrozenTrunkForm` where exact and enabled (``cfg.train.frozen_trunk``), else the
    graph path with ``info`` saying why (``used: false``, ``reason``).
    """
    settings = cfg.train.frozen_trunk
    reason = "disabled (train.frozen_trunk.enabled: false)" if not settings.enabled else None
    reason = reason or inexact_reason(model)
    if reason is not None:
        logger.info("frozen trunk not cached (graph path): %s", reason)
        return GraphForm(model, {"used": False, "reason": reason})
    root = cfg.cache_dir / "frozen_trunk" if settings.cache and cfg.cache_dir else None
    cache = FeatureCache(root, int(settings.max_cache_mb * 2**20))
    logger.info("frozen trunk: training the head on cached %s features", cut_of(model))
    return FrozenTrunkForm(model, cache, device)
