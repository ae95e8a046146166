"""Flow-run heartbeats for builds the CLI runs in its own process, against a running server.

Prefect sends them from a thread that sleeps in 1 s steps and is joined when the flow ends, so
every CLI build waited up to 1 s (0.5 s on average, a sixth of a small build) after its work
was done. Inside `Heartbeats`, Prefect's thread is off and this one sends the same event
(`prefect.flow-run.heartbeat` of resource `prefect.flow-run.<id>`, which zombie-detection
automations watch) at the same frequency, and stops at once. Heartbeats are what tells a
server that a build killed without a chance to say so (kill -9, an OOM kill) has crashed; the
CLI marks a run it stops on a signal itself. No frequency set (a temporary server): none.

The same follower watches the run's state for the CLI (`on_cancel`): a run cancelled on the
server (`prefect flow-run cancel`, the UI) only went Cancelling while the CLI built and
published on, and the server later recorded the published build as Cancelled.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

import prefect
from prefect.context import TaskRunContext
from prefect.events import emit_event
from prefect.settings import get_current_settings, temporary_settings


class Heartbeats:
    """While entered, Prefect's heartbeat thread is off, and flow runs of this process beat
    through `while_running` (a build's flow body) instead."""

    def __init__(self) -> None:
        self.every = get_current_settings().flows.heartbeat_frequency
        self.on_cancel: Callable[[], None] | None = None  # the run went Cancelling
        self.look_every = 5.0  # seconds between looks at the run's state, for on_cancel
        self._settings: Any = temporary_settings(updates={"flows.heartbeat_frequency": None})
        self._run: str | None = None
        self._stop = threading.Event()
        # Tables of a dataset may start on several threads; reentrant, as a signal handler on
        # the main thread stops the beats, maybe while that thread is inside `follow`.
        self._lock = threading.RLock()

    def __enter__(self) -> Heartbeats:
        self._settings.__enter__()
        _active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _active.remove(self)
        self.stop()
        self._settings.__exit__(*exc)

    def follow(self, run_id: str, run_name: str) -> None:
        """Beat for this flow run (called from inside it), and watch for its cancel, until
        `stop`."""
        with self._lock:
            if run_id and run_id != self._run and (self.every or self.on_cancel):
                self._stop.set()  # the previous run's, if any
                self._run, self._stop = run_id, threading.Event()
                if self.every:
                    self._start(run_id, run_name)
                if self.on_cancel is not None:
                    self._watch(run_id, self.on_cancel)

    def _watch(self, run_id: str, on_cancel: Callable[[], None]) -> None:
        args = (run_id, on_cancel, self._stop, self.look_every)
        _spawn(contextvars.copy_context(), "synthaix-cancel-watch", self._look, *args)

    @staticmethod
    def _look(run_id: str, on_cancel: Callable[[], None], stop: threading.Event, every: float):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType

        with get_client(sync_client=True) as client:
            while not stop.wait(every):
                with contextlib.suppress(Exception):  # the server away a moment: look again
                    state = client.read_flow_run(run_id).state
                    if state is not None and state.type in (
                        StateType.CANCELLING,
                        StateType.CANCELLED,
                    ):
                        if not stop.is_set():
                            on_cancel()
                        return

    def _start(self, run_id: str, run_name: str) -> None:
        resource = {
            "prefect.resource.id": f"prefect.flow-run.{run_id}",
            "prefect.resource.name": run_name,
            "prefect.version": prefect.__version__,
        }
        # The run's context (the API it talks to) goes with the thread, as Prefect's does. Its
        # task-run slot is set, to none: Prefect attaches an event's related resources from
        # its context, and a slot never set there reads whatever task ran on its events thread.
        context = contextvars.copy_context()
        context.run(TaskRunContext.__var__.set, None)
        _spawn(context, "synthaix-heartbeat", self._beat, resource, self._stop, self.every)

    def stop(self) -> None:
        """No heartbeat after this: the run has ended (one after its final state would make a
        zombie-detection automation mark a finished run Crashed, minutes later)."""
        with self._lock:
            self._stop.set()
            self._run = None

    @staticmethod
    def _beat(resource: dict[str, str], stop: threading.Event, every: int) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # as Prefect's: a missed one fails nothing
                emit_event(event="prefect.flow-run.heartbeat", resource=resource)
            stop.wait(every)


def _spawn(context: contextvars.Context, name: str, target: Callable[..., None], *args: Any):
    """A daemon thread running `target` in `context` (the run's: the API it talks to)."""
    threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True).start()


_active: list[Heartbeats] = []  # the CLI's, while it runs builds in this process


@contextlib.contextmanager
def while_running() -> Iterator[None]:
    """A build's flow body: its run beats from the first step, and stops beating as the body
    ends, before Prefect sets the final state. Without the CLI's Heartbeats (a deployment's
    run), Prefect's own thread beats, as configured."""
    beats = _active[-1] if _active else None
    if beats is None:
        yield
        return
    from prefect.runtime import flow_run

    beats.follow(flow_run.get_id() or "", flow_run.get_name() or "")
    try:
        yield
    finally:
        beats.stop()
