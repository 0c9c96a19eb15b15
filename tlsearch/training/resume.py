"""Mid-training checkpoints, so a preempted job resumes from its last checkpoint, not epoch 0.

:func:`tlsearch.training.loop.fit` calls an :class:`EpochCheckpoints` every ``every`` epochs
with the whole state of the loop (weights, optimiser, schedule, early stopping, history, best
weights, the torch RNG) and, at its start, asks it for a state to resume from. Where the state
goes is the caller's choice: a file in a search's storage (:mod:`tlsearch.jobs.checkpoints`),
or Ray Train's checkpoints for a DDP job (:class:`tlsearch.search.run.ddp.RayTrainCheckpoints`).
The batch order of an epoch depends only on (seed, epoch), so a resumed run trains the epochs
it had left exactly as an uninterrupted run would.

A state is only resumed when it was made by the same recipe on the same training part
(:func:`recipe_fingerprint`); otherwise it is ignored with a warning (e.g. a job retried at a
smaller batch after running out of GPU memory).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from typing import Any, Protocol

import torch

from tlsearch.training.config import TrainConfig

logger = logging.getLogger(__name__)

#: Recipe fields that do not change what an epoch computes.
EXECUTION_FIELDS = {"num_threads", "device", "log_every"}


class EpochCheckpoints(Protocol):
    """Where a training loop's state is saved and found again.

    Attributes:
        every: save after every this many epochs.
    """

    every: int

    def load(self) -> dict[str, Any] | None:
        """The latest saved state, or None."""
        ...

    def save(self, state: dict[str, Any]) -> None:
        """Keep ``state`` (called on every rank of a DDP job, with the same state)."""
        ...


#: TrainConfig fields added after results were written: left out of the fingerprint when None.
OPTIONAL_RECIPE_FIELDS = ("layer_lr_decay", "ema_decay")


def recipe_fingerprint(cfg: TrainConfig, n_train: int, steps_per_epoch: int) -> str:
    """What a state must have been made with to be resumed: the recipe and the batches."""
    # recipe options added later leave the fingerprint of a recipe without them unchanged
    unset = {name for name in OPTIONAL_RECIPE_FIELDS if getattr(cfg, name) is None}
    content = cfg.model_dump(mode="json", exclude=set(EXECUTION_FIELDS) | unset)
    text = json.dumps({"train": content, "n": n_train, "steps": steps_per_epoch}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_to_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def state_from_bytes(data: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def usable_state(
    checkpoints: EpochCheckpoints | None, fingerprint: str, max_epochs: int
) -> dict[str, Any] | None:
    """The checkpoint's state when it was made by this recipe, else None (said in the log)."""
    if checkpoints is None:
        return None
    state = checkpoints.load()
    if state is None:
        return None
    if state.get("fingerprint") != fingerprint:
        logger.warning(
            "a training checkpoint (epoch %s) was made by another recipe or training part: "
            "starting from epoch 1", state.get("epoch"),
        )  # fmt: skip
        return None
    if not 1 <= int(state["epoch"]) < max_epochs:
        return None
    logger.info("resuming training after epoch %d (from its checkpoint)", state["epoch"])
    return state


__all__ = ["EpochCheckpoints", "recipe_fingerprint", "state_from_bytes", "state_to_bytes"]
