"""Batches for training and prediction: which structures form each batch, and the loader.

A :class:`GraphLoader` serves training (reshuffled per epoch), validation and prediction from a
graph store (or anything :class:`Collatable`, e.g. cached trunk features); :class:`BatchSource`
is what :func:`tlsearch.training.loop.fit` accepts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch

from tlsearch.graphs.batch import GraphBatch


class Collatable(Protocol):
    """What a loader needs from a graph store (``tlsearch.graphs.store.GraphStore``)."""

    def __len__(self) -> int: ...

    def collate(self, indices: Sequence[int]) -> GraphBatch: ...


def num_batches(n: int, batch_size: int) -> int:
    """Batches of :func:`batch_chunks` for ``n`` structures: a lone last one is merged."""
    full, rest = divmod(n, batch_size)
    return full + (rest > 0) - (rest == 1 and full > 0 and batch_size > 1)


def batch_chunks(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive chunks of ``batch_size`` of ``order``; a last chunk of ONE structure is merged
    into the chunk before it (which then holds ``batch_size + 1``).

    Why: BatchNorm in training mode needs more than one value per channel. A batch of one
    structure gives one row to every BatchNorm over graphs (the new MLP layers of the
    ``new_head*`` strategies, the MPT heads) and, when it is a 1-atom cell, one row to
    ALIGNN's BatchNorm over atoms, and torch raises "Expected more than 1 value per channel
    when training" (whenever n_train mod batch = 1). alignn's train loader drops the last
    partial batch instead (``drop_last=True``); merging keeps every structure in every epoch.
    Any batch of two or more structures has at least two graphs and two atoms, and a 1-atom
    cell alone still has many bonds and bond pairs (24-36 and 576-1296 in the paper's data).
    ``batch_size == 1`` is taken literally (nothing to merge), as is a single structure;
    :func:`forward_training` then explains a BatchNorm failure.
    """
    chunks = [order[start : start + batch_size] for start in range(0, order.size, batch_size)]
    if len(chunks) > 1 and chunks[-1].size == 1 and batch_size > 1:
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return chunks


class GraphLoader:
    """Batches over a subset of a graph store, with (normalised) targets attached.

    Args:
        store: the graph store.
        indices: store positions in this subset.
        targets: (len(store), P) float array aligned with the store, NaN where unknown; ``None``
            for prediction without targets.
        batch_size: structures per batch; the last batch may be smaller, and a last batch of
            one structure joins the one before (``batch_size + 1`` then): see
            :func:`batch_chunks`. Nothing is dropped.
        shuffle: reshuffle every epoch with a ``torch.Generator`` seeded from (seed, epoch).
        seed: shuffling seed.

    The same batching serves training, validation and prediction: in eval mode BatchNorm uses
    its running moments, so predictions do not depend on how structures are batched.
    """

    def __init__(
        self,
        store: Collatable,
        indices: Sequence[int] | np.ndarray,
        targets: np.ndarray | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if targets is not None:
            targets = np.asarray(targets, dtype=np.float32)
            if targets.ndim != 2 or targets.shape[0] != len(store):
                raise ValueError(
                    f"targets must be (len(store)={len(store)}, P), got shape {targets.shape}"
                )
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed

    @property
    def num_structures(self) -> int:
        return int(self.indices.size)

    def __len__(self) -> int:
        """Batches per pass."""
        return num_batches(self.num_structures, self.batch_size)

    def order(self, epoch: int = 0) -> np.ndarray:
        """Store positions in the order of pass ``epoch``."""
        if not self.shuffle:
            return self.indices
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        perm = torch.randperm(self.num_structures, generator=torch.Generator().manual_seed(seed))
        return self.indices[perm.numpy()]

    def batches(self, epoch: int = 0) -> Iterator[GraphBatch]:
        """The batches of pass ``epoch`` with ``targets`` and ``target_mask`` set (if known)."""
        for chunk in batch_chunks(self.order(epoch), self.batch_size):
            yield self.batch_of(chunk)

    def batch_of(self, chunk: np.ndarray) -> GraphBatch:
        """One batch of the store positions ``chunk``, with targets and mask (if known)."""
        batch = self.store.collate(chunk.tolist())
        if self.targets is not None:
            values = torch.from_numpy(self.targets[chunk])
            mask = torch.isfinite(values)
            batch.targets = torch.where(mask, values, torch.zeros_like(values))
            batch.target_mask = mask
        return batch


class BatchSource(Protocol):
    """Anything :func:`fit` can train or validate on (a :class:`GraphLoader` is one)."""

    @property
    def num_structures(self) -> int: ...

    def __len__(self) -> int: ...

    def batches(self, epoch: int = 0) -> Iterator[GraphBatch]: ...
