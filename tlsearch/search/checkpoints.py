"""Where a search keeps mid-training checkpoints, so preempted jobs resume (issue 14).

Two homes for the training loop's :class:`~tlsearch.training.resume.EpochCheckpoints`:

- :class:`StorageCheckpoints`: one file, ``<resume_uri>/resume.pt``, in the search's storage
  (local disk, NFS, ``s3://``, ``gs://``), for jobs that train in their Tune trial (PT jobs
  with one worker, seed-runs). A trial that Tune retries (``max_failures``), on this node or
  another, finds it and trains only the epochs that were left. It is removed when the job
  ends.
- :class:`RayTrainCheckpoints`: Ray Train's own checkpoints for a DDP PT job (rank 0's
  state, reported by every rank with ``ray.train.report``; ``ray.train.get_checkpoint()`` on
  restart). The ``TorchTrainer`` restarts its workers after a worker dies (its
  ``FailureConfig``), and a retried trial that builds the trainer again with the same run name
  and storage path finds the run's checkpoints there.

Where: PT jobs under ``<storage>/pretrained/_resume/<key>`` (shared by every search using that
storage, like the PT cache), seed-runs under ``<search>/resume/<run_id>``. How often:
``pretrain.checkpoint_every`` (default 10 epochs) and ``checkpoint_every`` (seed-runs, default
off) in the spec. torch is imported only when a state is read or written (the driver, which
imports this module, never imports torch).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from tlsearch.results.store import join, resolve

logger = logging.getLogger(__name__)

STATE_FILE = "resume.pt"


class StorageCheckpoints:
    """The loop's state as ``<uri>/resume.pt`` (written to a temporary name, then moved)."""

    def __init__(self, uri: str, every: int) -> None:
        self.uri = uri
        self.every = every
        self.fs, self.folder = resolve(uri)

    @property
    def path(self) -> str:
        return f"{self.folder}/{STATE_FILE}"

    def load(self) -> dict[str, Any] | None:
        if self.fs.get_file_info(self.path).type != pafs.FileType.File:
            return None
        from tlsearch.training.resume import state_from_bytes

        with self.fs.open_input_stream(self.path) as src:
            data = src.read()
        try:
            return state_from_bytes(data)
        except Exception as exc:  # a torn or foreign file: train from the start
            logger.warning("ignoring the unreadable training checkpoint %s: %s", self.path, exc)
            return None

    def save(self, state: dict[str, Any]) -> None:
        from tlsearch.training.resume import state_to_bytes

        self.fs.create_dir(self.folder, recursive=True)
        tmp = f"{self.path}.tmp"
        with self.fs.open_output_stream(tmp) as out:
            out.write(state_to_bytes(state))
        self.fs.move(tmp, self.path)
        logger.info("training checkpoint after epoch %d: %s", state["epoch"], self.path)

    def clear(self) -> None:
        """Remove the folder (the job ended: nothing left to resume)."""
        if self.fs.get_file_info(self.folder).type == pafs.FileType.Directory:
            self.fs.delete_dir(self.folder)


class RayTrainCheckpoints:
    """Ray Train's checkpoints of a DDP job: rank 0 attaches the state, every rank reports."""

    def __init__(self, every: int, rank: int) -> None:
        self.every = every
        self.rank = rank

    def load(self) -> dict[str, Any] | None:
        import ray.train

        from tlsearch.training.resume import state_from_bytes

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return state_from_bytes((Path(folder) / STATE_FILE).read_bytes())

    def save(self, state: dict[str, Any]) -> None:
        import ray.train
        from ray.train import Checkpoint

        from tlsearch.training.resume import state_to_bytes

        metrics = {"epoch": int(state["epoch"])}
        if self.rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory(prefix="tlsearch-ckpt-") as tmp:
            (Path(tmp) / STATE_FILE).write_bytes(state_to_bytes(state))
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))


def pretrain_resume_uri(storage: str, key: str) -> str:
    """Where PT job ``key`` keeps its mid-training checkpoints."""
    return join(storage, "pretrained", "_resume", key)


def seed_run_resume_uri(search_dir: str, run_id: str) -> str:
    """Where seed-run ``run_id`` keeps its mid-training checkpoints."""
    return join(search_dir, "resume", run_id)


__all__ = [
    "RayTrainCheckpoints",
    "StorageCheckpoints",
    "pretrain_resume_uri",
    "seed_run_resume_uri",
]
