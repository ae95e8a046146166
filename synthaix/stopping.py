"""Builds being stopped (a flow run cancelled, an interrupt): their chunks send no further LLM
request, so the process ends within one round trip instead of finishing every chunk in flight
(a cancelled run kept requesting for 30 s, until Prefect killed it). Chunks name their build
(`Chunk.build`); only chunks running in this process hear it (threads, not Dask or Ray
workers)."""

from __future__ import annotations

import threading
import time

from synthaix.errors import SynthaixError

_stopping: set[str] = set()
_lock = threading.Lock()


class BuildStopped(SynthaixError):
    """A chunk of a build that is being stopped gave up its next request."""


def stop(build: str) -> None:
    with _lock:
        _stopping.add(build)


def forget(build: str) -> None:
    """The build has ended: nothing of it is running any more."""
    with _lock:
        _stopping.discard(build)


def check(build: str) -> None:
    """Raise BuildStopped if `build` is being stopped (before a request is sent)."""
    if build and build in _stopping:
        raise BuildStopped(f"build {build} is stopping: no further request is sent")


def sleep(build: str, seconds: float) -> None:
    """time.sleep that a stop of `build` cuts short (BuildStopped): a request waiting minutes
    for a configured rate limit held a stopped build up as long."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        check(build)
        time.sleep(min(left, 0.25))
