"""Failure classes of jobs: which errors mean "this input can never work" (recorded as a
``failed`` row and never retried) and which are worth a retry (everything else)."""

from __future__ import annotations


class GpuOutOfMemoryError(RuntimeError):
    """A run ran out of GPU memory at its batch size and again at half of it (or could not be
    halved): recorded as ``failed`` with the reason, never as ``diverged``, and not retried
    (under the trial's memory cap the same run would run out again)."""


#: Exceptions that mean "this input can never work" (bad data, bad config, missing feature, a
#: run too large for its GPU share): recorded as ``failed`` rows, not retried. Anything else
#: propagates so Tune retries the trial.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotImplementedError,
    GpuOutOfMemoryError,
)


class PretrainUnavailableError(ValueError):
    """The PT model a configuration needs failed or diverged (recorded, never retried)."""
