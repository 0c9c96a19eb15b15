"""Where Tune's console output goes while a search runs (:class:`~tlsearch.search.watch.monitor.
SearchMonitor` sets it up around each experiment's ``fit``).

Tune prints per-trial tables to stdout and logs INFO lines and whole "Trial task failed"
tracebacks: with ``tune_output="file"`` the tables and INFO lines go to ``<search>/tune.log``
only and the tracebacks are written whole there and shortened to their last line on the
console; ``"both"`` tees the tables to the console too (:class:`Tee`). Ray's own "View the
dashboard at" line is dropped (:func:`without_ray_banner`); the driver logs the link once.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TextIO

from tlsearch.storage.uri import is_remote, join, resolve

TuneOutput = Literal["console", "file", "both"]
#: The logger of Tune's "Trial task failed for trial ..." records (with the whole traceback).
TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
TUNE_LOG = "tune.log"
TUNE_LOGGERS = ("ray.tune", "ray.train", "ray.air")


class _NoBanner(logging.Filter):
    """Drops Ray's "Started a local Ray instance. View the dashboard at ..." line (the driver
    logs the dashboard link once itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "View the dashboard at" not in str(record.msg)


@contextlib.contextmanager
def without_ray_banner() -> Iterator[None]:
    """Within the context (around ``ray.init``), Ray's own dashboard line is not logged."""
    target = logging.getLogger("ray._private.worker")
    banner = _NoBanner()
    target.addFilter(banner)
    try:
        yield
    finally:
        target.removeFilter(banner)


def tune_log_path(search_dir: str, name: str) -> Path:
    """``<search>/tune.log``; for a search on an object store, a local temporary file."""
    if is_remote(search_dir):
        return Path(tempfile.gettempdir()) / "tlsearch-logs" / name / TUNE_LOG
    return Path(resolve(join(search_dir, TUNE_LOG))[1])


class Tee:
    """A text stream writing to several (Tune's tables in the log file and on the console)."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


class ShortTrialFailures(logging.Filter):
    """Tune's "Trial task failed for trial ..." records: whole (with the traceback) into the log
    file, on the console only their first line and the exception's last line."""

    def __init__(self, log: TextIO) -> None:
        super().__init__()
        self.log = log
        self.formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or not record.getMessage().startswith("Trial task failed"):
            return True
        self.log.write(self.formatter.format(record) + "\n")
        self.log.flush()
        record.msg = f"{record.getMessage()}: {last_line(record.exc_info[1])} (in {self.log.name})"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


def last_line(exc: BaseException | None) -> str:
    """The last non-empty line of an exception's text (a remote error ends with its cause)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class TuneInfoToFile(logging.Filter):
    """Tune's and Train's INFO records (where results were written, ...) go to the log file
    instead of the console; warnings and errors stay on the console."""

    def __init__(self, log: TextIO) -> None:
        super().__init__()
        self.log = log
        self.formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not record.name.startswith(TUNE_LOGGERS):
            return True
        self.log.write(self.formatter.format(record) + "\n")
        return False


@contextlib.contextmanager
def tune_info_to_file(log: TextIO) -> Iterator[None]:
    """Within the context, :class:`TuneInfoToFile` filters the handlers of Ray's logger."""
    handlers = logging.getLogger("ray").handlers
    divert = TuneInfoToFile(log)
    for handler in handlers:
        handler.addFilter(divert)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(divert)


@contextlib.contextmanager
def short_trial_failures(log: TextIO) -> Iterator[None]:
    """Within the context, :class:`ShortTrialFailures` filters Tune's controller logger."""
    target = logging.getLogger(TUNE_CONTROLLER_LOGGER)
    short = ShortTrialFailures(log)
    target.addFilter(short)
    try:
        yield
    finally:
        target.removeFilter(short)
