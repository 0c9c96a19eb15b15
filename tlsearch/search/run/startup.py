"""Driver start-up and shut-down: the environment of a local Ray start and of ``Tuner.fit``,
and stopping Ray while the search command finishes its output.

:func:`scoped_env` sets variables for one call: a local Ray starts with
:data:`NO_PRESTART_ENV`. Loggers: CSV and JSON always, TensorBoard on
request. :func:`stop_ray_in_background`: see there.

Tune adds its default loggers (CSV, JSON and TensorBoardX) to every ``Tuner.fit`` unless
``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``. Creating the TensorBoardX one imports
``tensorboardX``, which imports torch: 2-3.5 s of driver time on the critical path before the
first trial is scheduled (measured on 2 CPU cores with a 4-trial Tune run: the trials started
3.5-4 s after ``fit()`` with the default loggers, 2.1-2.6 s without), in a driver that otherwise
never needs torch. So searches pass the CSV and JSON loggers explicitly (what Tune's
``ExperimentAnalysis`` and ``result.json`` readers need), add the TensorBoardX one only when the
spec asks for ``tensorboard: true``, and fit with Tune's automatic loggers off.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

logger = logging.getLogger(__name__)

AUTO_LOGGERS_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"

#: Tune's ``ExperimentAnalysis`` (built by ``Tuner.restore`` and at the end of every
#: ``Tuner.fit``) warns "Failed to fetch metrics for N trial(s)" with one line per trial that
#: has no ``result.json`` / ``progress.csv``, which is every trial that has not started yet.
TUNE_ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"
NO_RESULT_FILES = "FileNotFoundError('Could not fetch metrics"

#: A local Ray normally starts one idle worker process per CPU for the driver's tasks. Tune
#: never uses them (its trial actors carry their own runtime environment, so Ray starts new
#: processes for them), and on a small machine they compete with Ray's own start-up: without
#: them ``ray.init`` took 5.35 s instead of 6.85 s (medians of 5 alternated starts, 2 CPUs).
NO_PRESTART_ENV = {"RAY_prestart_worker_first_driver": "0"}


def terminate_as_interrupt() -> None:
    """Make SIGTERM stop this process as SIGINT does (from the main thread only).

    ``ray.init`` makes SIGTERM call ``sys.exit`` wherever the driver is, which ends in Ray's
    C++ stack dump (rc 134). With this, SIGTERM runs the current SIGINT handler: Tune saves
    its state and stops the trials, and the command exits 130 like on Ctrl+C.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        interrupt = signal.getsignal(signal.SIGINT)
        if callable(interrupt):
            interrupt(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def tune_callbacks(tensorboard: bool) -> list[Any]:
    """Tune logger callbacks: CSV + JSON (``progress.csv``, ``result.json``), + TensorBoardX."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    callbacks: list[Any] = [CSVLoggerCallback(), JsonLoggerCallback()]
    if tensorboard:
        try:
            from ray.tune.logger import TBXLoggerCallback

            callbacks.append(TBXLoggerCallback())
        except ImportError as exc:
            raise ValueError(
                "tensorboard: true needs the tensorboardX package (pip install tensorboardX)"
            ) from exc
    return callbacks


def has_explicit_loggers(tuner: Any) -> bool:
    """Whether ``tuner`` (new or restored) was configured with :func:`tune_callbacks`.

    An experiment started before TensorBoard became opt-in has no explicit loggers; it
    resumes with Tune's defaults, as it started.
    """
    from ray.tune.logger import JsonLoggerCallback

    local = getattr(tuner, "_local_tuner", None)  # None with Ray Client: Tune's defaults
    if local is None:
        return False
    callbacks = local.get_run_config().callbacks or []
    return any(isinstance(c, JsonLoggerCallback) for c in callbacks)


@contextmanager
def scoped_env(values: Mapping[str, str]) -> Iterator[None]:
    """Within the context, ``os.environ`` has ``values``; restored after."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class NoResultFilesFilter(logging.Filter):
    """Keeps Tune's "no result files" lines (trials not started yet) off the console.

    The lines of a "Failed to fetch metrics" warning that say a trial has no result files are
    taken out (kept in :attr:`hidden`); a warning with other lines (a file that cannot be
    read) passes with those lines only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hidden: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Failed to fetch metrics"):
            return True
        lines = message.splitlines()[1:]
        kept = [line for line in lines if NO_RESULT_FILES not in line]
        self.hidden += [line for line in lines if NO_RESULT_FILES in line]
        if not kept:
            return False
        record.msg = f"Failed to fetch metrics for {len(kept)} trial(s):\n" + "\n".join(kept)
        record.args = ()
        return True


@contextmanager
def quiet_pending_trials() -> Iterator[None]:
    """Within the context, Tune's warnings about trials without result files (not started
    yet) go to this module's DEBUG log instead of the console (``-v`` shows them)."""
    tune_logger = logging.getLogger(TUNE_ANALYSIS_LOGGER)
    hide = NoResultFilesFilter()
    tune_logger.addFilter(hide)
    try:
        yield
    finally:
        tune_logger.removeFilter(hide)
        if hide.hidden:
            logger.debug(
                "Tune found no result files for %d trial(s) (not started yet):\n%s",
                len(hide.hidden),
                "\n".join(hide.hidden),
            )


def explicit_loggers_only(active: bool = True) -> AbstractContextManager[None]:
    """Within the context (when ``active``), Tune adds no default loggers."""
    return scoped_env({AUTO_LOGGERS_ENV: "1"} if active else {})


def stop_ray_in_background() -> threading.Thread | None:
    """Disconnect from Ray now; stop the local Ray's processes in a thread (join it before exit).

    Stopping a local Ray is mostly waiting for its processes to exit (``kill_all_processes``:
    1.1-1.3 s of a 1.15-1.4 s ``ray.shutdown()`` on 2 CPUs), and Ray's own exit hook first sleeps
    0.5 s; the search command stops the Ray it started as soon as its experiments are done and
    prints the status table and draws the plot while the processes exit.

    Only the waiting runs in the thread. The rest of ``ray.shutdown()`` (disconnecting and
    destroying the core worker, ~20 ms) runs here, before the caller runs anything else: a
    Ray object freed on this thread while the core worker is being destroyed (an ``ObjectRef``
    of Tune's left in a reference cycle, freed by the garbage collector during the status
    table or the plot) calls ``CoreWorker.remove_object_ref_reference``, and Ray ends the
    process with ``_exit(1)`` ("The core worker has already been shutdown"): a finished
    search exiting with 1. Once the core worker is gone, Ray ignores such frees.

    Returns:
        The thread stopping the processes, or None when there is nothing to wait for (this
        process joined a cluster, or a Ray without the attributes used here: then
        ``ray.shutdown()`` ran whole, here).
    """
    import ray
    from ray._private import worker as ray_worker

    node = getattr(ray_worker, "_global_node", None)
    if node is None or not hasattr(node, "kill_all_processes"):
        ray.shutdown()
        return None
    ray_worker._global_node = None  # ray.shutdown() below leaves the processes to the thread
    try:
        ray.shutdown()
    finally:
        thread = threading.Thread(
            target=_stop_processes, args=(node,), name="tlsearch-ray-shutdown"
        )
        thread.start()
    return thread


def _stop_processes(node: Any) -> None:
    """What ``ray.shutdown()`` does with the processes ``ray.init()`` started."""
    if node.is_head():
        node.destroy_external_storage()
    node.kill_all_processes(check_alive=False, allow_graceful=True, wait=False)
