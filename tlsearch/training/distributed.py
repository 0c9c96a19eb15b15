"""What :func:`tlsearch.training.loop.fit` needs to train one model on several processes (DDP).

The training loop is the same on one process and on ``world`` of them; only these pieces
differ, and every collective they call receives tensors on the rank's device (NCCL rejects CPU
tensors):

- :class:`ShardedTrainBatches`: each epoch, every rank draws the same shuffled order as a
  one-process :class:`~tlsearch.training.loop.GraphLoader` would, cuts it into the same global
  batches of the configured ``batch_size``, and trains on its 1/``world`` slice of each. So
  the global batch, the steps per epoch, the learning-rate schedule and the epoch's order are
  those of a one-process run, and every structure is seen once per epoch.
- :meth:`Distributed.gather_rows`: validation predictions of every rank's shard gathered, so
  every rank scores the whole validation set and takes the same early-stopping decision.
- :meth:`Distributed.sum`: epoch statistics (loss, structures, divergence) summed over ranks.
- :meth:`Distributed.broadcast_buffers`: rank 0's BatchNorm running statistics to every rank
  once per epoch (DDP is built without its per-step buffer broadcast).

What still differs from one process: BatchNorm in training mode normalises with the statistics
of each rank's slice (``batch_size / world`` structures), not of the whole global batch, and
DDP averages the ranks' gradients with equal weights while slices may differ by one structure.
PT models trained on several workers are therefore cached under their own key
(:func:`tlsearch.jobs.identity.pretrain_key`). This module imports only torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from tlsearch.graphs.batch import GraphBatch
from tlsearch.training.batches import GraphLoader, batch_chunks


@dataclass(frozen=True)
class Distributed:
    """This process's place in a DDP job: ``rank`` of ``world``, training on ``device``.

    The process group must be initialised (Ray Train's ``TorchTrainer`` does it).
    """

    rank: int
    world: int
    device: torch.device

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} of world {self.world} is not a valid DDP place")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` on the device in ``DistributedDataParallel`` (gradients averaged)."""
        module.to(self.device)
        if not dist.is_initialized():  # a one-rank stand-in (tests): nothing to average
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel
        # no buffer collective per step (torch >= 2.13 names the switch forward_sync_buffers)
        params = inspect.signature(ddp.__init__).parameters
        sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
        return ddp(module, device_ids=ids, **{sync: False})

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed element-wise over the ranks (float64, one collective)."""
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.cpu()]

    def gather_rows(self, rows: np.ndarray) -> np.ndarray:
        """Every rank's ``rows`` (N_r, P) stacked in rank order; the same array on all ranks.

        A rank with no rows may pass any width (an empty shard's predictions are (0, 0)).
        """
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2:
            rows = rows.reshape(len(rows), -1) if rows.size else np.zeros((len(rows), 0))
        shape = torch.tensor(rows.shape, dtype=torch.int64, device=self.device)
        shapes = [torch.zeros(2, dtype=torch.int64, device=self.device) for _ in range(self.world)]
        dist.all_gather(shapes, shape)
        sizes = [int(s[0].item()) for s in shapes]
        width = max(int(s[1].item()) for s in shapes)
        padded = torch.full((max(sizes), width), torch.nan, dtype=torch.float64, device=self.device)
        if rows.size:
            padded[: rows.shape[0]] = torch.from_numpy(rows).to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return np.concatenate([p[:n].cpu().numpy() for p, n in zip(parts, sizes, strict=True)])

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) copied to every rank."""
        for buffer in module.buffers():
            if buffer.device != self.device:
                raise ValueError(f"a model buffer is on {buffer.device}, not on {self.device}")
            dist.broadcast(buffer, src=0)

    def shard(self, indices: np.ndarray) -> np.ndarray:
        """This rank's share of an evaluation set (every ``world``-th structure)."""
        return np.asarray(indices)[self.rank :: self.world]


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (else ``module`` itself)."""
    if isinstance(module, nn.parallel.DistributedDataParallel):
        return module.module
    return module


def global_chunks(order: np.ndarray, batch_size: int, world: int) -> list[np.ndarray]:
    """The one-process batches of ``order`` (:func:`batch_chunks`), with a last batch too small
    to give every rank 2 structures merged into the one before it.

    Raises:
        ValueError: when ``batch_size`` leaves a rank fewer than 2 structures per step
            (BatchNorm in training mode needs 2), or the whole training part does.
    """
    if batch_size < 2 * world:
        raise ValueError(
            f"batch_size {batch_size} over {world} DDP workers leaves a worker fewer than 2 "
            f"structures per step (BatchNorm needs 2): use batch_size >= {2 * world} or fewer "
            "workers"
        )
    if order.size < 2 * world:
        raise ValueError(
            f"{order.size} training structures cannot give each of {world} DDP workers 2 per "
            "step: use fewer workers or more data"
        )
    chunks = batch_chunks(order, batch_size)
    if len(chunks) > 1 and chunks[-1].size < 2 * world:
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return chunks


class ShardedTrainBatches:
    """A :class:`GraphLoader`'s training batches, each split across the DDP ranks.

    ``len()`` and the learning-rate schedule count global batches (the same on every rank);
    ``num_structures`` is the whole training part.
    """

    def __init__(self, loader: GraphLoader, place: Distributed) -> None:
        if not isinstance(loader, GraphLoader):
            raise TypeError(f"DDP training needs graph batches, not {type(loader).__name__}")
        self.loader = loader
        self.place = place
        global_chunks(loader.indices, loader.batch_size, place.world)  # refuse early

    @property
    def num_structures(self) -> int:
        return self.loader.num_structures

    @property
    def batch_size(self) -> int:
        return self.loader.batch_size

    def __len__(self) -> int:
        return len(global_chunks(self.loader.indices, self.loader.batch_size, self.place.world))

    def batches(self, epoch: int = 0) -> Iterator[GraphBatch]:
        order = self.loader.order(epoch)  # the same on every rank: seeded by (seed, epoch)
        for chunk in global_chunks(order, self.loader.batch_size, self.place.world):
            yield self.loader.batch_of(np.array_split(chunk, self.place.world)[self.place.rank])


__all__ = ["Distributed", "ShardedTrainBatches", "global_chunks", "unwrap"]
