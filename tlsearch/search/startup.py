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

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

AUTO_LOGGERS_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"

#: A local Ray normally starts one idle worker process per CPU for the driver's tasks. Tune
#: never uses them (its trial actors carry their own runtime environment, so Ray starts new
#: processes for them), and on a small machine they compete with Ray's own start-up: without
#: them ``ray.init`` took 5.35 s instead of 6.85 s (medians of 5 alternated starts, 2 CPUs).
NO_PRESTART_ENV = {"RAY_prestart_worker_first_driver": "0"}


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


def explicit_loggers_only(active: bool = True) -> AbstractContextManager[None]:
    """Within the context (when ``active``), Tune adds no default loggers."""
    return scoped_env({AUTO_LOGGERS_ENV: "1"} if active else {})


def stop_ray_in_background() -> threading.Thread:
    """Start ``ray.shutdown()`` in a thread and return it: join it before the process exits.

    Stopping a local Ray is mostly waiting for its processes to exit (1.1-1.4 s on 2 CPUs),
    and Ray's own exit hook first sleeps 0.5 s; the search command instead stops the Ray it
    started as soon as its experiments are done, while it prints the status table and draws
    the plot (which need no Ray). On a cluster it joined, shutting down only disconnects.
    """
    import ray

    thread = threading.Thread(target=ray.shutdown, name="tlsearch-ray-shutdown")
    thread.start()
    return thread
