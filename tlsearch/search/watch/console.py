"""The console of ``tlsearch search``: one compact progress display, failures named.

On a terminal, two live lines (tqdm) at the bottom: seed-runs done / planned with a bar,
elapsed time and ETA, running trials, failed, diverged and PT jobs done; below it the best
configuration so far by the search metric. Elsewhere (a pipe, a file, ``CI`` set) plain lines:
one at the start, one at most every ``interval_s`` while rows land, one at the end. Both modes
print one line per failed or diverged seed-run, failed PT job and Tune trial that errored after
its retries, with the reason, as soon as the monitor sees it. Fed by
:class:`tlsearch.search.watch.monitor.SearchMonitor`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import time
from typing import Any, TextIO

from tlsearch.search.watch.monitor import SearchState, Sink, describe
from tlsearch.storage.uri import join

#: Failure reasons on the console are cut at this many characters (the row has all of it).
REASON_CHARS = 300


def is_live(stream: TextIO) -> bool:
    """Whether ``stream`` takes a live display: a terminal, not CI, not a dumb terminal."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()) or ci or os.environ.get("TERM") == "dumb":
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0  # 0: a pty of no size
    except (OSError, ValueError, AttributeError):
        return False


def duration(seconds: float | None) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def failure_line(row: dict[str, Any]) -> str | None:
    """The console line of a failed or diverged row (None for an ok row)."""
    status = row.get("status")
    if status not in ("failed", "diverged"):
        return None
    reason = " ".join(str(row.get("error") or "").split())
    if not reason:
        reason = "non-finite loss" if status == "diverged" else "no reason recorded"
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 3] + "..."
    if row.get("kind") == "pretrain":
        what = f"PT job {row['run_id']} ({describe(row)})"
    else:
        what = f"seed-run {row['run_id']} ({describe(row)}, seed {row.get('seed')})"
    return f"{status.upper()} {what}: {reason}"


def progress_line(state: SearchState) -> str:
    """``[0:01:20] seed-runs 12/30, running 2, ..., ETA 0:02:00 | best val_mae ...``."""
    best = state.best()
    return f"[{duration(state.elapsed)}] {state.counts_text()}, ETA {duration(state.eta())}" + (
        f" | {best}" if best else ""
    )


class ConsoleProgress(Sink):
    """The progress display of one search (see the module docstring).

    Args:
        stream: where it writes (default: ``sys.stderr``, beside the log lines).
        live: a live display; default: when ``stream`` is a terminal and ``CI`` is not set.
        interval_s: the least time between two plain progress lines.
        progress: False: failures and the last line only (``-q``).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        interval_s: float = 30.0,
        progress: bool = True,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = (is_live(self.stream) if live is None else live) and progress
        self.interval_s = interval_s
        self.progress = progress
        self._bar: Any = None
        self._best: Any = None
        self._redirect: contextlib.ExitStack | None = None
        self._last_line = -math.inf  # monotonic() can be below interval_s after a boot
        self._shown: str | None = None

    def start(self, state: SearchState, rows: list[dict[str, Any]]) -> None:
        if state.tune_log:
            self._say(f"Tune's trial tables: {state.tune_log} (-v: also here)")
        if self.live:
            self._open_bars(state)
        elif self.progress and state.done:  # a resume: what is recorded already
            self._line(state)

    def rows(self, state: SearchState, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            line = failure_line(row)
            if line:
                self._say(line)
        if self._bar is not None:
            self._refresh(state)
        elif self.progress and time.monotonic() - self._last_line >= self.interval_s:
            self._line(state)

    def tick(self, state: SearchState) -> None:
        if self._bar is not None:
            self._refresh(state)

    def trial_error(self, state: SearchState, message: str) -> None:
        self._say(f"ERROR {message}")

    def close(self, state: SearchState, finished: bool) -> None:
        if self._bar is not None:
            self._bar.close()
            self._best.close()
            self._bar = self._best = None
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None
        best = state.best()
        end = "done" if finished else "stopped"
        self._say(
            f"search {state.name} {end} after {duration(state.elapsed)}: {state.counts_text()}"
            + (f", {state.errored_trials} trial(s) errored" if state.errored_trials else "")
            + (f" | {best}" if best else "")
        )

    # --- output --------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        """One line above the live display (or plain)."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _line(self, state: SearchState) -> None:
        line = progress_line(state)
        self._last_line = time.monotonic()
        if line != self._shown:
            self._shown = line
            self._say(line)

    def _open_bars(self, state: SearchState) -> None:
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._bar = tqdm(
            total=state.planned,
            initial=state.done,
            desc="seed-runs",
            file=self.stream,
            dynamic_ncols=True,
            leave=False,
            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}",
        )
        self._best = tqdm(file=self.stream, bar_format="{desc}", leave=False, position=1)
        self._redirect = contextlib.ExitStack()  # log records go above the display
        self._redirect.enter_context(logging_redirect_tqdm([logging.getLogger("tlsearch")]))
        self._refresh(state)

    def _refresh(self, state: SearchState) -> None:
        failed, diverged = state.counts.get("failed", 0), state.counts.get("diverged", 0)
        self._bar.n = state.done
        self._bar.set_postfix_str(
            f"running {state.running}, failed {failed}, diverged {diverged}, "
            f"{state.skipped_text()}PT jobs {state.pt_done}/{state.planned_pretrain}",
            refresh=False,
        )
        best = str(state.best() or "best: none yet")
        width = shutil.get_terminal_size().columns - 1
        if len(best) > width:  # one line: the display moves the cursor up by lines
            best = best[: width - 3] + "..."
        self._best.set_description_str(best, refresh=False)
        self._bar.refresh()
        self._best.refresh()


def command_monitor(
    spec: Any, verbosity: int = 0, mlflow: str | None = None, wandb: str | None = None
) -> Any:
    """The :class:`~tlsearch.search.watch.monitor.SearchMonitor` of ``tlsearch search``.

    Args:
        spec: the search (its folder holds the default MLflow store).
        verbosity: ``-v`` count minus ``-q`` count: 0 live display (plain lines off a terminal)
            and Tune's tables in ``<search>/tune.log``; 1 or more plain lines and Tune's tables
            on the console too; below 0 failures and the last line only.
        mlflow: ``--mlflow``'s value (:data:`tlsearch.search.watch.tracking.DEFAULT_MLFLOW` or a
            URI).
        wandb: ``--wandb``'s project.

    Raises:
        ValueError: a tracker's package is not installed, or no default MLflow store fits.
    """
    from tlsearch.search.watch.monitor import SearchMonitor
    from tlsearch.search.watch.tracking import MlflowTracker, WandbTracker, mlflow_uri

    console = ConsoleProgress(live=False if verbosity > 0 else None, progress=verbosity >= 0)
    sinks: list[Sink] = [console]
    if mlflow is not None:
        sinks.append(MlflowTracker(mlflow_uri(mlflow, join(spec.storage, spec.name))))
    if wandb is not None:
        sinks.append(WandbTracker(wandb))
    return SearchMonitor(sinks, tune_output="both" if verbosity > 0 else "file")
