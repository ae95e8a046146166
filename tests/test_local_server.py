"""The temporary Prefect server of a build with no PREFECT_API_URL: started before Prefect is
imported when no API is configured, and kept to what one build needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from flows import local_server
from flows.local_server import prefect_api, spawn_early

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with no Prefect settings of their own, working in an empty folder."""
    for name in (
        "PREFECT_API_URL",
        "PREFECT_PROFILE",
        "PREFECT_PROFILES_PATH",
        *local_server._TEST_MODES,
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def _profiles(home: Path, active: str, url: str | None, **settings: str) -> None:
    folder = home / "prefect-home"
    folder.mkdir(exist_ok=True)
    values = {**settings, **({"PREFECT_API_URL": url} if url is not None else {})}
    lines = "".join(f'{key} = "{value}"\n' for key, value in values.items())
    text = f'active = "{active}"\n\n[profiles.{active}]\n{lines}'
    (folder / "profiles.toml").write_text(text)


@pytest.mark.parametrize(
    ("case", "early"),
    [
        ("nothing set", True),
        ("environment", False),
        ("environment, lower case", False),
        ("environment empty", True),  # over a profile that names one
        ("active profile", False),
        ("active profile without a url", True),
        ("PREFECT_PROFILE names no profile of the file", True),  # Prefect's default then
        ("a lower-case prefect_profile", False),  # Prefect ignores it: the file's active one
        ("a test mode", False),
        ("a .env here", False),
        ("prefect.toml here", False),
        ("pyproject.toml with tool.prefect", False),
        ("pyproject.toml without", True),
    ],
)
def test_an_early_server_only_when_prefect_would_find_no_api(
    home: Path, monkeypatch: pytest.MonkeyPatch, case: str, early: bool
) -> None:
    from prefect.settings import Settings

    url = "http://server:4200/api"
    match case:
        case "environment":
            monkeypatch.setenv("PREFECT_API_URL", url)
        case "environment, lower case":
            monkeypatch.setenv("prefect_api_url", url)
        case "environment empty":
            _profiles(home, "mine", url)
            monkeypatch.setenv("PREFECT_API_URL", "")
        case "active profile":
            _profiles(home, "mine", url)
        case "active profile without a url":
            _profiles(home, "mine", None, PREFECT_SERVER_ANALYTICS_ENABLED="true")
        case "PREFECT_PROFILE names no profile of the file":
            _profiles(home, "mine", url)
            monkeypatch.setenv("PREFECT_PROFILE", "other")
        case "a lower-case prefect_profile":
            _profiles(home, "mine", url)
            monkeypatch.setenv("prefect_profile", "other")
        case "a test mode":
            monkeypatch.setenv("PREFECT_TEST_MODE", "1")
        case "a .env here":
            Path(".env").write_text(f"PREFECT_API_URL={url}\n")
        case "prefect.toml here":
            Path("prefect.toml").write_text(f'[api]\nurl = "{url}"\n')
        case "pyproject.toml with tool.prefect":
            Path("pyproject.toml").write_text(f'[tool]\nprefect = {{api = {{url = "{url}"}}}}\n')
        case "pyproject.toml without":
            Path("pyproject.toml").write_text('[project]\nname = "mine"\n')
    profile = local_server._profile_without_api()
    assert (profile is not None) is early
    if profile is not None:  # Prefect agrees: no API (read fresh from env and files)
        assert not Settings().api.url
    if case == "active profile without a url":
        assert profile == {"PREFECT_SERVER_ANALYTICS_ENABLED": "true"}  # passed on to it
    if case in (
        "environment",
        "environment, lower case",
        "active profile",
        "a lower-case prefect_profile",
    ):
        assert Settings().api.url == url


def test_the_temporary_server_starts_early_and_keeps_to_one_build(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import get_current_settings

    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)  # conftest sets it
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "true")  # the user's choice
    # A database in memory: a new file would cost ~10 s of migrations.
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "sqlite+aiosqlite:///:memory:")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    early = spawn_early()
    assert early is not None and early.process is not None
    # As in a new process: not the API of the test session's Prefect harness.
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        prefect_api(early=early) as server,
    ):
        assert server is early
        settings = httpx.get(f"{server.api_url}/admin/settings", timeout=10).json()["server"]
        assert settings["analytics_enabled"] is False  # no call to Prefect's servers
        assert settings["register_blocks_on_start"] is False
        assert settings["services"]["triggers"]["enabled"] is True  # set: kept
        assert get_current_settings().flows.heartbeat_frequency is None
        process = server.process
    assert process is not None and process.poll() is not None  # stopped with the build


def test_an_early_server_is_stopped_when_prefect_names_an_api_after_all(home: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    early = spawn_early()
    assert early is not None and early.process is not None
    process = early.process
    with (
        temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        prefect_api(early=early) as server,
    ):
        assert server is None
        assert process.poll() is not None


def test_no_early_server_when_an_api_is_configured(home: Path) -> None:
    _profiles(home, "mine", "http://127.0.0.1:9/api")
    assert spawn_early() is None


def test_an_early_server_is_stopped_when_prefect_refuses_its_settings(home: Path) -> None:
    """A setting Prefect cannot read fails its import, after the server was started."""
    script = """
import sys
from flows.local_server import prefect_api, spawn_early
early = spawn_early()
assert early is not None
try:
    with prefect_api(early=early):
        pass
except Exception as exc:
    print(type(exc).__name__, early.process is None, early.log.exists())
"""
    env = {**os.environ, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "abc"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.stdout.split() == ["ValidationError", "True", "False"], done.stderr[-2000:]


def test_a_killed_builds_concurrency_slots_come_back(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build killed while its requests held slots of runner.llm_limit never returned them:
    a server run as ephemeral leaves Prefect's repossessor out, and kept leases in memory.
    After max_concurrency such kills, every Dask build of the limit waited forever. (The
    lease is 60 s, the least Prefect allows: this test waits that long.)"""
    import time

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "sqlite+aiosqlite:///:memory:")
    config = home / "llm.yaml"
    config.write_text(
        "name: lz\nrows: 10\ncolumns:\n  - {name: a, type: llm, prompt: x}\n"
        "provider: {base_url: 'http://127.0.0.1:9/v1', model: m}\n"
        "runner: {type: dask, llm_limit: leased}\n"
    )
    holder = (
        "import os, sys\n"
        "from synthaix.config import load_config\n"
        "from tasks.limits import ensure_limits, limit_gate\n"
        "config = load_config(sys.argv[1])\n"
        "ensure_limits(config)\n"
        "slot = limit_gate(config)()\n"
        "slot.__enter__()\n"
        "os._exit(0)  # killed: nothing released\n"
    )
    with temporary_settings(restore_defaults={PREFECT_API_URL}), prefect_api() as server:
        assert server is not None
        settings = httpx.get(f"{server.api_url}/admin/settings", timeout=10).json()["server"]
        assert settings["concurrency"]["lease_storage"].endswith(".filesystem")
        env = {**os.environ, "PREFECT_API_URL": server.api_url, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", holder, str(config)], env=env, check=True)
        killed = time.monotonic()

        def held() -> int:
            with get_client(sync_client=True) as client:
                return client.read_global_concurrency_limit_by_name("leased").active_slots

        assert held() == 1
        while held() and time.monotonic() - killed < 150:
            time.sleep(2)
        assert held() == 0


def test_logs_of_servers_killed_with_their_build_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build killed with -9 never ran `stop`: its server's empty log stayed in /tmp (150
    of them on one machine). The next server removes those of processes gone."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    logs = {
        "dead": tmp_path / f"synthaix-prefect-{gone.pid}.log",
        "alive": tmp_path / f"synthaix-prefect-{os.getppid()}.log",
        "not ours": tmp_path / "synthaix-prefect-notes.log",
    }
    if os.getuid() == 0:  # another user's, of a process gone: theirs (unlink may fail)
        logs["other user's"] = tmp_path / f"synthaix-prefect-{gone.pid + 100000}.log"
    for log in logs.values():
        log.write_text("")
    if os.getuid() == 0:
        os.chown(logs["other user's"], 65534, 65534)
    local_server.TemporaryServer()
    kept = {name for name, log in logs.items() if log.exists()}
    assert kept == {"alive", "not ours"} | ({"other user's"} if os.getuid() == 0 else set())


def test_the_temporary_server_runs_prefects_repossessor() -> None:
    """If a Prefect release moves what this switches on, it says so (tested here) rather than
    failing every build's server, or doing nothing without a word."""
    from prefect.server.services import perpetual_services, repossessor

    from flows.server_process import _repossess_expired_leases

    assert _repossess_expired_leases()
    services = perpetual_services.get_perpetual_services(ephemeral=True)
    assert repossessor.monitor_expired_leases in [s.function for s in services]
