"""The temporary Prefect server of a build run with no PREFECT_API_URL.

Prefect's own temporary server is a plain child process: when the build is killed (kill -9, an
OOM kill) it lives on as an orphan. This one is started by `flows.server_process`, which exits
by itself within a second of its parent's death, and is stopped when the build ends. Its output
goes to a log file, shown only when it fails to start.

It lives for one build, so what a lasting server is for is off unless a Prefect setting (the
environment, the active profile) turns it on:
- Prefect's telemetry, a call to Prefect's servers at every start (offline builds make none;
  PREFECT_SERVER_ANALYTICS_ENABLED=true turns it on);
- registering block types at start, which imports every Prefect collection installed (0.6 s
  for Dask's); a block saved from Python registers its own type;
- automations (triggers and their actions: 0.9 s of CPU at start);
- flow-run heartbeats: nothing on this server reads them, and stopping the heartbeat thread
  held every build up by up to 1 s (it sleeps in 1 s steps).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
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
        _remove_orphaned_logs(self.log.parent)

    def spawn(self, settings: dict[str, str] | None = None) -> None:
        """Start the server process; `wait` for it to answer. `settings`: the Prefect settings
        to pass on (default: this process's; before Prefect is imported, the profile's)."""
        changed = settings
        if changed is None:
            from prefect.settings import get_current_settings

            changed = get_current_settings().to_environment_variables(exclude_unset=True)
        env = {
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
            "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",  # it imports them all first
            "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
            # Leases of concurrency slots in files, not in the server's memory: they outlive
            # a killed build's server, and its slots are then returned (server_process).
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": (
                "prefect.server.concurrency.lease_storage.filesystem"
            ),
            **os.environ,
            **changed,
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

    def wait(self, timeout: float) -> None:
        assert self.process is not None, "spawn() first"
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


def _remove_orphaned_logs(folder: Path) -> None:
    """The logs of this user's builds killed with -9 (whose `stop` never ran): those of
    processes gone. Another user's are theirs (a shared /tmp would refuse anyway)."""
    for log in folder.glob("synthaix-prefect-*.log"):
        pid = log.stem.removeprefix("synthaix-prefect-")
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if log.lstat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                log.unlink(missing_ok=True)
        except OSError:  # alive (another user's process), or the file went: leave it
            continue


def spawn_early() -> TemporaryServer | None:
    """Start the temporary server before Prefect is imported (1-1.5 s of `import prefect`
    sooner), when no Prefect API is configured for sure. Pass it to `prefect_api`, which
    stops it if Prefect's settings name an API after all."""
    profile = _profile_without_api()
    if profile is None:
        return None
    server = TemporaryServer()
    server.spawn(settings=profile)
    return server


_TEST_MODES = (  # any of them makes Prefect read its shipped profiles only
    "PREFECT_TEST_MODE",
    "PREFECT_UNIT_TEST_MODE",
    "PREFECT_TESTING_UNIT_TEST_MODE",
    "PREFECT_TESTING_TEST_MODE",
)


def _profile_without_api() -> dict[str, str] | None:
    """The active Prefect profile's settings, found as Prefect finds them, when neither it
    nor the environment names an API. None when one does, or when only Prefect can tell (a
    .env, prefect.toml or pyproject.toml [tool.prefect] here, its test modes)."""
    # Prefect reads these two case-insensitively, the profile's path and name as written.
    env = {key.upper(): value for key, value in os.environ.items()}
    if env.get("PREFECT_API_URL") or any(env.get(mode) for mode in _TEST_MODES):
        return None
    if Path(".env").exists() or Path("prefect.toml").exists():
        return None
    try:
        if Path("pyproject.toml").is_file():
            project = tomllib.loads(Path("pyproject.toml").read_text())
            if "prefect" in project.get("tool", {}):
                return None
        spec = importlib.util.find_spec("prefect")  # finds the package, does not import it
        if spec is None or not spec.submodule_search_locations:
            return None
        shipped = Path(next(iter(spec.submodule_search_locations))) / "settings/profiles.toml"
        defaults = tomllib.loads(shipped.read_text())
        profile = defaults["profiles"].get(defaults.get("active", "ephemeral"), {})
        home = Path("~/.prefect").expanduser()
        if os.environ.get("PREFECT_PROFILES_PATH"):
            path = Path(os.environ["PREFECT_PROFILES_PATH"])
        elif os.environ.get("PREFECT_HOME"):
            path = Path(os.environ["PREFECT_HOME"]) / "profiles.toml"
        else:  # as Prefect: its shipped file when the user has none
            path = home / "profiles.toml" if (home / "profiles.toml").exists() else shipped
        if path.is_file():
            found = tomllib.loads(path.read_text())
            active = os.environ.get("PREFECT_PROFILE") or found.get("active")
            profile = found.get("profiles", {}).get(active, profile) if active else profile
    except (OSError, tomllib.TOMLDecodeError, AttributeError, KeyError):
        return None
    if "PREFECT_API_URL" not in env and profile.get("PREFECT_API_URL"):
        return None
    return {key: str(value) for key, value in profile.items() if key == key.upper()}  # as read


@contextlib.contextmanager
def prefect_api(
    meanwhile: Callable[[], object] | None = None,
    early: TemporaryServer | None = None,
) -> Iterator[TemporaryServer | None]:
    """Use the configured Prefect API, or a temporary server tied to this process (`early`,
    if `spawn_early` started one). `meanwhile` runs while that server starts (5-10 s, most of
    it importing Prefect's server in its own process): the caller's own Prefect imports then
    cost no wait of their own."""
    try:
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
            temporary_settings,
        )

        configured = PREFECT_API_URL.value()
    except BaseException:
        if early is not None:
            early.stop()  # e.g. a setting Prefect refuses
        raise
    if configured:
        if early is not None:
            early.stop()  # a setting named an API after all
        if meanwhile is not None:
            meanwhile()
        yield None
        return
    server = early or TemporaryServer()
    try:
        if early is None:
            server.spawn()
        if meanwhile is not None:
            meanwhile()
        server.wait(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        unread = {"flows.heartbeat_frequency": None}  # see the module's docstring
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, **unread}):
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
