"""Watching a running search from its driver: the rows landing in its run log, Tune's trials.

A :class:`SearchMonitor` is handed to :func:`tlsearch.search.run.driver.run_search`. While each
experiment runs, Tune's controller calls the monitor's callback (:func:`monitor_callback`) after
every step and on every finished or errored trial; the monitor then reads the rows that landed
in ``runs/`` since it last looked (:class:`RowFeed`, at most every ``poll_s`` seconds unless a
trial just ended), keeps the counts and the best configuration (:class:`SearchState`) and tells
its sinks: the console display (:class:`tlsearch.search.watch.console.ConsoleProgress`) and the
experiment trackers (:mod:`tlsearch.search.watch.tracking`). The Parquet rows are the truth;
Tune only says how many trials run now and which trials errored after their retries.

Tune's own console output (its per-trial tables, printed to stdout by its progress reporter)
goes to ``<search>/tune.log`` while an experiment runs (``tune_output="file"``), to that file
and the console (``"both"``, ``tlsearch search -v``), or to the console alone (``"console"``,
no monitor). With ``"file"``, Tune's "Trial task failed" tracebacks are written whole to the log
file and shortened to their last line on the console (:mod:`tlsearch.search.watch.tune_output`).

The callbacks are added to the tuner just before ``fit`` (:meth:`SearchMonitor.fitting`), never
to the ``RunConfig`` that Tune pickles into ``tuner.pkl``: a resumed search gets the monitor of
its own run, and the pickled state holds no open file or tracker client.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tlsearch.results.schema import conform
from tlsearch.search.watch.tune_output import (
    Tee,
    TuneOutput,
    short_trial_failures,
    tune_info_to_file,
    tune_log_path,
)
from tlsearch.storage.uri import join, resolve

logger = logging.getLogger(__name__)


# --- rows ----------------------------------------------------------------------------------------


class RowFeed:
    """The rows of a ``runs/`` folder not handed out before (one file per row, read once)."""

    def __init__(self, runs_uri: str) -> None:
        self.fs, self.path = resolve(runs_uri)
        self.seen: set[str] = set()

    def new_rows(self) -> list[dict[str, Any]]:
        """Rows whose files appeared since the last call, oldest file first."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except OSError as exc:  # an object store that does not answer now: next time
            logger.debug("cannot list %s: %s", self.path, exc)
            return []
        fresh = [
            info
            for info in infos
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and not info.base_name.startswith(("_", "."))
            and info.base_name not in self.seen
        ]
        rows = []
        for info in sorted(fresh, key=lambda i: (i.mtime_ns or 0, i.base_name)):
            try:
                table = pq.read_table(info.path, filesystem=self.fs)
            except (OSError, ValueError) as exc:  # being replaced: read it next time
                logger.debug("cannot read %s yet: %s", info.path, exc)
                continue
            self.seen.add(info.base_name)
            rows += conform(table).to_pylist()
        return rows


def describe(row: dict[str, Any]) -> str:
    """A configuration in a few words: ``finetune source:240 -> target:40 unfreeze_all ...``."""
    kind = row.get("kind")
    target = f"{row.get('ft_target')}:{_size(row.get('ft_size'))}"
    source = f"{row.get('pt_source')}:{_size(row.get('pt_size'))}"
    if kind == "pretrain":
        return f"PT {source}"
    head = f"scratch {target}" if kind == "scratch" else f"{kind} {source} -> {target}"
    parts = [head, row.get("strategy"), row.get("sampling")]
    if row.get("lr") is not None:
        parts.append(f"lr {row['lr']:g}")
    return " ".join(str(p) for p in parts if p)


def _size(value: Any) -> str:
    return "all" if value is None else str(value)


@dataclass
class Best:
    """The best configuration so far: its mean metric over its seeds, all of them ok."""

    metric: str
    value: float
    seeds: int
    config: str

    def __str__(self) -> str:
        return f"best {self.metric} {self.value:.4g} ({self.seeds} seeds): {self.config}"


@dataclass
class SearchState:
    """What the console shows and the trackers read: counts, running trials, the best."""

    name: str
    search_dir: str
    planned: int
    planned_pretrain: int
    metric: str = "val_mae"
    mode: str = "min"
    dashboard: str | None = None
    tune_log: str | None = None
    started: float = field(default_factory=time.time)
    initial: int = 0  # seed-runs recorded before this run (a resume)
    counts: Counter = field(default_factory=Counter)  # seed-runs by status
    pt_counts: Counter = field(default_factory=Counter)
    running: int = 0
    errored_trials: int = 0
    configs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def pt_done(self) -> int:
        return sum(self.pt_counts.values())

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def eta(self) -> float | None:
        """Seconds left at the rate of the seed-runs recorded since the start (None: unknown)."""
        new = self.done - self.initial
        left = max(self.planned - self.done, 0)
        if left == 0:
            return 0.0
        return None if new <= 0 else self.elapsed / new * left

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            if row.get("kind") == "pretrain":
                self.pt_counts[row.get("status")] += 1
                continue
            self.counts[row.get("status")] += 1
            self.configs[row.get("config_hash") or row["run_id"]].append(row)

    def best(self) -> Best | None:
        """The configuration with the best mean metric whose recorded seeds are all ok."""
        scored = []
        for members in self.configs.values():
            values = [m.get(self.metric) for m in members]
            if any(m.get("status") != "ok" for m in members) or any(
                v is None or not math.isfinite(v) for v in values
            ):
                continue
            scored.append((statistics.fmean(values), len(values), members[0]))
        if not scored:
            return None
        sign = -1.0 if self.mode == "max" else 1.0
        value, seeds, row = min(scored, key=lambda s: sign * s[0])
        return Best(self.metric, value, seeds, describe(row))

    def skipped_text(self) -> str:
        """``skipped N, `` when ``search.prefilter`` skipped seed-runs, else empty."""
        skipped = self.counts.get("skipped", 0)
        return f"skipped {skipped}, " if skipped else ""

    def counts_text(self) -> str:
        """``seed-runs 12/30, running 2, failed 1, diverged 0, PT jobs 1/1``."""
        return (
            f"seed-runs {self.done}/{self.planned}, running {self.running}, "
            f"failed {self.counts.get('failed', 0)}, diverged {self.counts.get('diverged', 0)}, "
            f"{self.skipped_text()}PT jobs {self.pt_done}/{self.planned_pretrain}"
        )


# --- sinks ---------------------------------------------------------------------------------------


class Sink:
    """What a monitor tells: override what you need (every method does nothing here)."""

    def start(self, state: SearchState, rows: list[dict[str, Any]]) -> None:
        """The search starts; ``rows`` were recorded before (a resume)."""

    def rows(self, state: SearchState, rows: list[dict[str, Any]]) -> None:
        """New rows landed (``state`` already counts them)."""

    def tick(self, state: SearchState) -> None:
        """Time passed or the running trials changed."""

    def trial_error(self, state: SearchState, message: str) -> None:
        """A Tune trial errored after its retries (its seed-runs have no row)."""

    def tune_callbacks(self) -> list[Any]:
        """Tune callbacks this sink adds to every experiment (Ray's W&B logger)."""
        return []

    def close(self, state: SearchState, finished: bool) -> None:
        """The search ended: ran to its end (``finished``) or was stopped by an error."""


# --- the monitor ---------------------------------------------------------------------------------


class SearchMonitor:
    """Reads a search's new rows while it runs and tells its sinks (see the module docstring).

    Args:
        sinks: the console display, trackers.
        tune_output: where Tune's own tables go (``"file"``: ``<search>/tune.log`` only).
        poll_s: the most often the run log is listed (a trial's end always lists it).
        tick_s: the most often the sinks' :meth:`Sink.tick` runs.
    """

    def __init__(
        self,
        sinks: Sequence[Sink] = (),
        *,
        tune_output: TuneOutput = "file",
        poll_s: float = 1.0,
        tick_s: float = 0.5,
    ) -> None:
        self.sinks = list(sinks)
        self.tune_output = tune_output
        self.poll_s = poll_s
        self.tick_s = tick_s
        self.state: SearchState | None = None
        self.feed: RowFeed | None = None
        self._last_poll = self._last_tick = 0.0
        self._log: TextIO | None = None
        self._closed = False

    def start(self, search_dir: str, plan: Any, dashboard: str | None = None) -> None:
        """Begin watching ``search_dir`` (after its ``plan.json`` is written)."""
        spec = plan.spec
        self.state = SearchState(
            name=spec.name,
            search_dir=search_dir,
            planned=plan.planned_seed_runs,
            planned_pretrain=len(plan.pretrain_jobs),
            metric=spec.search.metric,
            mode=str(spec.search.mode),
            dashboard=dashboard,
        )
        if self.tune_output != "console":
            path = tune_log_path(search_dir, spec.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self.state.tune_log = str(path)
        self.feed = RowFeed(join(search_dir, "runs"))
        before = self.feed.new_rows()
        self.state.add(before)
        self.state.initial = self.state.done
        self._each("start", self.state, before)

    def poll(self, running: int | None = None, force: bool = False) -> None:
        """Read new rows (at most every ``poll_s`` unless ``force``) and tell the sinks."""
        if self.state is None or self.feed is None:
            return
        now = time.monotonic()
        if running is not None:
            self.state.running = running
        if force or now - self._last_poll >= self.poll_s:
            self._last_poll = now
            rows = self.feed.new_rows()
            if rows:
                self.state.add(rows)
                self._each("rows", self.state, rows)
        if force or now - self._last_tick >= self.tick_s:
            self._last_tick = now
            self._each("tick", self.state)

    def trial_error(self, trial: Any) -> None:
        """Tune gave up on ``trial``: name it and its reason."""
        if self.state is None:
            return
        self.state.errored_trials += 1
        self._each("trial_error", self.state, trial_error_text(trial))

    def tune_callbacks(self) -> list[Any]:
        """The callbacks added to an experiment's ``fit``: this monitor's and the sinks'."""
        extra = [callback for sink in self.sinks for callback in sink.tune_callbacks()]
        return [monitor_callback(self), *extra]

    @contextlib.contextmanager
    def fitting(self, tuner: Any) -> Iterator[None]:
        """Within the context (around ``tuner.fit()``), Tune calls this monitor and its output
        goes where ``tune_output`` says."""
        add_callbacks(tuner, self.tune_callbacks())
        with contextlib.ExitStack() as stack:
            if self._log is not None:
                out = self._log if self.tune_output == "file" else Tee(self._log, sys.stdout)
                stack.enter_context(contextlib.redirect_stdout(out))  # type: ignore[arg-type]
                if self.tune_output == "file":
                    stack.enter_context(short_trial_failures(self._log))
                    stack.enter_context(tune_info_to_file(self._log))
            try:
                yield
            finally:
                self.poll(running=0, force=True)  # rows that landed after Tune's last step

    def close(self, finished: bool) -> None:
        """Stop watching: last rows, then each sink's :meth:`Sink.close`; the log file."""
        if self._closed or self.state is None:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.poll(running=0, force=True)
        self._each("close", self.state, finished)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> SearchMonitor:
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        self.close(finished=kind is None)

    def _each(self, method: str, *args: Any) -> None:
        """Call ``method`` on every sink; a failing sink is named, never fails the search."""
        for sink in self.sinks:
            try:
                getattr(sink, method)(*args)
            except Exception as exc:  # a tracker server down must not stop the search
                logger.warning("%s.%s failed: %s", type(sink).__name__, method, exc)
                logger.debug("traceback", exc_info=True)


def trial_error_text(trial: Any) -> str:
    """``trial <name> (<point>) errored after N attempt(s): <last line of its error>``."""
    point = (getattr(trial, "config", None) or {}).get("point") or {}
    what = f"PT job {point['pt_key']}" if "pt_key" in point else _point_text(point)
    reason = "see its error file"
    error_file = getattr(trial, "error_file", None)
    if error_file and os.path.isfile(error_file):
        lines = [line.strip() for line in Path(error_file).read_text().splitlines()]
        lines = [line for line in lines if line]
        if lines:
            reason = lines[-1]
        reason += f" (traceback: {error_file})"
    attempts = int(getattr(trial, "num_failures", 0) or 0)
    return f"trial {trial} ({what}) errored after {attempts} attempt(s): {reason}"


def _point_text(point: dict[str, Any]) -> str:
    row = {
        "kind": point.get("kind"),
        "ft_target": point.get("target"),
        "ft_size": point.get("ft_size"),
        "pt_source": point.get("pt_source"),
        "pt_size": point.get("pt_size"),
        "strategy": point.get("strategy"),
        "sampling": point.get("sampling"),
        "lr": point.get("lr"),
    }
    text = describe(row) if row["kind"] else str(point)
    return text + (f" seed {point['seed']}" if "seed" in point else "")


def add_callbacks(tuner: Any, callbacks: list[Any]) -> bool:
    """Add ``callbacks`` to the ``RunConfig`` that ``tuner.fit()`` will use (not the pickled
    one); False with Ray Client, whose tuner runs on the cluster (no live monitor then)."""
    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        logger.info("no live progress with Ray Client: the status is shown at the end")
        return False
    run_config = copy.copy(local.get_run_config())
    run_config.callbacks = [*(run_config.callbacks or []), *callbacks]
    local._run_config = run_config
    return True


def monitor_callback(monitor: SearchMonitor) -> Any:
    """A Tune ``Callback`` that drives ``monitor`` from Tune's controller loop."""
    from ray.tune import Callback

    class _MonitorCallback(Callback):
        def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
            monitor.poll(running=_running(trials))

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any):
            monitor.poll(running=_running(trials), force=True)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any):
            monitor.trial_error(trial)
            monitor.poll(running=_running(trials), force=True)

    return _MonitorCallback()


def _running(trials: list[Any]) -> int:
    return sum(str(getattr(t, "status", "")) == "RUNNING" for t in trials)
