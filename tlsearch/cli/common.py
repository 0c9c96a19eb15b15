"""What every ``tlsearch`` command shares: the error type, exit codes and output helpers.

Bad input (missing files, invalid configs, unusable data) ends with one ``tlsearch: error: ...``
line on stderr and exit code :data:`EXIT_BAD_INPUT`; ``-v`` adds the traceback. A full disk is
:data:`EXIT_DISK_FULL`; a search stopped by SIGINT or SIGTERM, :data:`EXIT_INTERRUPTED`.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
from typing import Any

import pydantic

logger = logging.getLogger("tlsearch.cli")

EXIT_BAD_INPUT = 2
#: No space left on a device (``ENOSPC``): not bad input; free space and run again.
EXIT_DISK_FULL = 4
EXIT_INTERRUPTED = 130


class CLIError(ValueError):
    """A usage problem found by the CLI itself (reported like any bad input)."""


def one_line(exc: BaseException) -> str:
    """A single-line message for ``exc`` (pydantic errors: ``field: problem; ...``)."""
    if isinstance(exc, pydantic.ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "config"
            parts.append(f"{loc}: {err['msg']}")
        return "invalid config: " + "; ".join(parts)
    return " ".join(str(exc).split()) or type(exc).__name__


def print_json(data: dict[str, Any]) -> None:
    """``data`` as indented JSON on stdout (NaN and paths made JSON-safe)."""
    # numpy (~0.1 s): loaded when a command prints, so that ``tlsearch --help`` does not.
    from tlsearch.training.metrics import json_safe

    sys.stdout.write(json.dumps(json_safe(data), indent=2) + "\n")


def run_handler(args: argparse.Namespace) -> int:
    """Run the parsed command's handler; bad input becomes one ``tlsearch: error:`` line and
    :data:`EXIT_BAD_INPUT` (a KeyboardInterrupt goes to the caller)."""
    try:
        return int(args.handler(args) or 0)
    except (ValueError, OSError) as exc:
        logger.debug("traceback", exc_info=True)
        if disk_full(exc):
            sys.stderr.write(
                f"tlsearch: error: no space left on the device: {one_line(exc)}; free some "
                "space and run the command again (a search continues with --resume)\n"
            )
            return EXIT_DISK_FULL
        sys.stderr.write(f"tlsearch: error: {one_line(exc)}\n")
        return EXIT_BAD_INPUT


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is "no space left on device"."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) == errno.ENOSPC or "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
