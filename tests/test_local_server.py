"""The temporary Prefect server of a build with no PREFECT_API_URL: started before Prefect is
imported when no API is configured, and kept to what one build needs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from flows import local_server
from flows.local_server import prefect_api, spawn_early

DEFAULTS = "ephemeral"  # Prefect's own active profile; its "local" profile names an API


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with no Prefect settings of their own, working in an empty folder."""
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def _profiles(home: Path, active: str, url: str | None) -> None:
    folder = home / "prefect-home"
    folder.mkdir(exist_ok=True)
    setting = f'PREFECT_API_URL = "{url}"\n' if url is not None else ""
    text = f'active = "{active}"\n\n[profiles.{active}]\n{setting}'
    (folder / "profiles.toml").write_text(text)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nothing set", False),
        ("environment", True),
        ("environment empty", False),
        ("active profile", True),
        ("active profile without a url", False),
        ("PREFECT_PROFILE=local", True),  # Prefect's default profiles file has it
        ("a .env here", None),
        ("prefect.toml here", None),
        ("pyproject.toml with tool.prefect", None),
        ("pyproject.toml without", False),
    ],
)
def test_whether_an_api_is_configured_is_read_without_importing_prefect(
    home: Path, monkeypatch: pytest.MonkeyPatch, case: str, expected: bool | None
) -> None:
    match case:
        case "environment":
            monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
        case "environment empty":
            _profiles(home, "mine", "http://127.0.0.1:4200/api")  # the environment wins
            monkeypatch.setenv("PREFECT_API_URL", "")
        case "active profile":
            _profiles(home, "mine", "http://server:4200/api")
        case "active profile without a url":
            _profiles(home, "mine", None)
        case "PREFECT_PROFILE=local":
            monkeypatch.setenv("PREFECT_PROFILE", "local")
        case "a .env here":
            Path(".env").write_text("PREFECT_API_URL=http://server:4200/api\n")
        case "prefect.toml here":
            Path("prefect.toml").write_text('[api]\nurl = "http://server:4200/api"\n')
        case "pyproject.toml with tool.prefect":
            Path("pyproject.toml").write_text('[tool.prefect.api]\nurl = "http://x/api"\n')
        case "pyproject.toml without":
            Path("pyproject.toml").write_text('[project]\nname = "mine"\n')
    assert local_server._api_configured() is expected


def test_the_temporary_server_starts_early_and_keeps_to_one_build(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import get_current_settings

    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)  # conftest sets it
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "true")  # the user's choice
    # A database in memory: a new file would cost ~10 s of migrations.
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "sqlite+aiosqlite:///:memory:")
    early = spawn_early()
    assert early is not None and early.process is not None
    with prefect_api(early=early) as server:
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
