"""Logging setup for the command line (library code only creates loggers, never handlers)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"


def level_for(verbosity: int) -> int:
    """Map ``-q``/``-v`` counts to a level: -1 WARNING, 0 INFO, 1 or more DEBUG."""
    if verbosity < 0:
        return logging.WARNING
    if verbosity == 0:
        return logging.INFO
    return logging.DEBUG


def add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` on a subcommand (``verbose_sub``/``quiet_sub``, added to the global ones)."""
    parser.add_argument(
        "-v", "--verbose", dest="verbose_sub", action="count", default=0, help="more log output"
    )
    parser.add_argument(
        "-q", "--quiet", dest="quiet_sub", action="count", default=0, help="warnings only"
    )


def setup_logging(verbosity: int = 0) -> None:
    """Send ``tlsearch`` log records to stderr at the level given by ``verbosity``.

    Idempotent: calling it again replaces the handler it installed before (so tests that call the
    CLI several times do not duplicate lines).
    """
    logger = logging.getLogger("tlsearch")
    logger.setLevel(logging.DEBUG)  # the handlers filter: the console by verbosity, files at INFO
    for handler in list(logger.handlers):
        if getattr(handler, "_tlsearch_console", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setLevel(level_for(verbosity))
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    handler._tlsearch_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


@contextmanager
def log_to_file(path: Path | str) -> Iterator[None]:
    """Also write ``tlsearch`` log records (INFO and above) to ``path`` while the block runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("tlsearch")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    previous = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(previous)
