"""Mid-training checkpoints in the search's storage, so preempted jobs resume (issue 14).

:class:`StorageCheckpoints` keeps the training loop's state
(:class:`~tlsearch.training.resume.EpochCheckpoints`) as one file, ``<resume_uri>/resume.pt``
(local disk, NFS, ``s3://``, ``gs://``), for jobs that train in their Tune trial (PT jobs with
one worker, seed-runs). A trial that Tune retries (``max_failures``), on this node or another,
finds it and trains only the epochs that were left. It is removed when the job ends. (A DDP PT
job keeps Ray Train's own checkpoints instead:
:class:`tlsearch.search.run.ddp.RayTrainCheckpoints`.)

Where: PT jobs under ``<storage>/pretrained/_resume/<key>`` (shared by every search using that
storage, like the PT cache), seed-runs under ``<search>/resume/<run_id>``. How often:
``pretrain.checkpoint_every`` (default 10 epochs) and ``checkpoint_every`` (seed-runs, default
off) in the spec. torch is imported only when a state is read or written (the driver, which
imports this module, never imports torch).
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow.fs as pafs

from tlsearch.storage.uri import join, resolve

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


def pretrain_resume_uri(storage: str, key: str) -> str:
    """Where PT job ``key`` keeps its mid-training checkpoints."""
    return join(storage, "pretrained", "_resume", key)


def seed_run_resume_uri(search_dir: str, run_id: str) -> str:
    """Where seed-run ``run_id`` keeps its mid-training checkpoints."""
    return join(search_dir, "resume", run_id)
