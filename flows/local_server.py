"""The temporary Prefect server of a build run with no PREFECT_API_URL.

Prefect's own temporary server is a plain child process: when the build is killed (kill -9, an
OOM kill) it lives on as an orphan. This one is started by `flows.server_process`, which exits
by itself within a second of its parent's death, and is stopped when the build ends. Its output
goes to a log file, shown only when it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from synthaix.errors import SynthaixError

_running: list[TemporaryServer] = []


class TemporaryServer:
    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = Path(tempfile.gettempdir()) / f"synthaix-prefect-{os.getpid()}.log"

    def start(self, timeout: float) -> None:
        from prefect.settings import get_current_settings

        env = {
            **os.environ,
            **get_current_settings().to_environment_variables(exclude_unset=True),
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        command = [sys.executable, "-m", "flows.server_process", str(os.getpid()), str(self.port)]
        with self.log.open("wb") as log:
            # Its own session: a terminal's Ctrl-C or `timeout` signals the whole process
            # group, and the build still needs its server to finish or cancel cleanly.
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=log, start_new_session=True
            )
        _running.append(self)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                time.sleep(0.1)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise SynthaixError(
            f"the temporary Prefect server did not start within {timeout:.0f} s:\n{tail}",
            hint="set PREFECT_API_URL to a running server (prefect server start)",
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self in _running:
            _running.remove(self)
        self.log.unlink(missing_ok=True)


@contextlib.contextmanager
def prefect_api(startup_timeout: float | None = None) -> Iterator[TemporaryServer | None]:
    """Use the configured Prefect API, or a temporary server tied to this process."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        yield None
        return
    server = TemporaryServer()
    try:
        server.start(startup_timeout or PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield server
            finally:
                _drain_logs_and_events()
    finally:
        server.stop()


def stop_temporary_servers() -> None:
    """Stop the temporary server(s) now, e.g. before a hard exit on a signal."""
    for server in list(_running):
        server.stop()


def _drain_logs_and_events() -> None:
    """Send what Prefect still holds before its server goes away (else: connection errors)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # a worker that never started has nothing to send
            worker.drain_all(timeout=5, at_exit=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
