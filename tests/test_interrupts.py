"""Stopping a build (Ctrl-C, SIGTERM, kill -9) is prompt and honest, and leaves nothing behind:
no staged parts, no run RUNNING forever on the server, no orphan Prefect server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from llm_helpers import FAULT_MIX, provider, simulator
from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings
from safety_helpers import table_counts

from conftest import write_config

SAMPLER_COLUMNS = [
    {"name": "id", "type": "sequence"},
    {"name": "name", "type": "person.full_name"},
    {"name": "city", "type": "address.city"},
    {"name": "v", "type": "float", "min": 0, "max": 1000, "decimals": 3},
]


def _start(config: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "synthaix.cli", "build", str(config), *args]
    return subprocess.Popen(
        command,
        env={**os.environ, "OPENAI_API_KEY": "x", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _api_env() -> dict[str, str]:
    api = get_current_settings().api.url
    assert api, "the prefect_server fixture sets an API URL"
    return {"PREFECT_API_URL": api}


def _wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.usefixtures("prefect_server")
def test_sigterm_stops_an_llm_build_under_faults_within_seconds(tmp_path: Path) -> None:
    """SIGTERM (timeout, systemd, Kubernetes) ends a build in retries within 10 s, says nothing
    was published, removes its staged parts, and marks its flow run Cancelled on the server."""
    with simulator(FAULT_MIX, latency=0.3, retry_after_ms=2000) as sim:
        data = {
            "name": "notes",
            "rows": 400,
            "chunk_size": 10,
            "columns": [
                {"name": "topic", "type": "category", "values": ["a", "b", "c"]},
                {"name": "note", "type": "llm", "prompt": "A note about {{ topic }}"},
            ],
            "provider": provider(sim.url, rows_per_request=5, max_attempts=20),
            "runner": {"workers": 4, "retry_backoff": 5},
            "output": {"dir": str(tmp_path / "out")},
        }
        config = write_config(tmp_path / "notes.yaml", data)
        build = _start(config, _api_env())
        _wait_for(lambda: sim.state.stats()["counts"].get("requests", 0) >= 20)
        stopped = time.monotonic()
        build.send_signal(signal.SIGTERM)
        _, stderr = build.communicate(timeout=60)
        elapsed = time.monotonic() - stopped

    assert elapsed < 10, elapsed
    assert build.returncode == 128 + signal.SIGTERM
    assert "interrupted (SIGTERM): nothing published" in stderr
    assert "Traceback" not in stderr
    staging = tmp_path / "out" / ".staging"
    assert not staging.exists() or not list(staging.rglob("*.parquet"))
    assert not (tmp_path / "out" / "data").exists()
    with get_client(sync_client=True) as client:
        runs = [
            r
            for r in client.read_flow_runs(limit=200)
            if (r.parameters.get("config") or {}).get("output", {}).get("dir")
            == str(tmp_path / "out")
        ]
    assert [r.state.type.value for r in runs] == ["CANCELLED"]


@pytest.mark.usefixtures("prefect_server")
def test_ctrl_c_after_publishing_says_it_published(tmp_path: Path) -> None:
    """The temporary server's shutdown follows the publish: Ctrl-C then must not claim that
    nothing was published."""
    data = {"name": "people", "rows": 3000, "chunk_size": 1000, "columns": SAMPLER_COLUMNS}
    data["output"] = {"dir": str(tmp_path / "out")}
    config = write_config(tmp_path / "people.yaml", data)
    build = _start(config, {"PREFECT_API_URL": ""})  # a temporary server, stopped at the end
    manifest = tmp_path / "out" / "manifest.json"
    _wait_for(manifest.exists, timeout=180)
    build.send_signal(signal.SIGINT)
    _, stderr = build.communicate(timeout=60)

    assert table_counts(tmp_path / "out" / "people.duckdb") == {"people": 3000}
    assert "nothing published" not in stderr
    if build.returncode != 0:  # the signal came before the build had exited by itself
        assert build.returncode == 128 + signal.SIGINT
        assert "interrupted (SIGINT): published; interrupted during shutdown" in stderr


def test_kill_9_leaves_no_orphan_prefect_server(tmp_path: Path) -> None:
    data = {"name": "people", "rows": 2_000_000, "chunk_size": 50_000, "columns": SAMPLER_COLUMNS}
    data["output"] = {"dir": str(tmp_path / "out")}
    config = write_config(tmp_path / "people.yaml", data)
    build = _start(config, {"PREFECT_API_URL": ""})
    staging = tmp_path / "out" / ".staging"
    _wait_for(lambda: any(staging.glob("*/part-*.parquet")), timeout=180)
    children = psutil.Process(build.pid).children(recursive=True)
    assert children, "the build runs its temporary Prefect server as a child"
    build.send_signal(signal.SIGKILL)
    build.communicate(timeout=30)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]

    # The next build removes the killed one's staged parts and succeeds.
    data["rows"] = 500
    write_config(config, data)
    result = subprocess.run(
        [sys.executable, "-m", "synthaix.cli", "build", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": ""},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert not staging.exists() or not list(staging.rglob("*.parquet"))
    assert table_counts(tmp_path / "out" / "people.duckdb") == {"people": 500}


@pytest.mark.usefixtures("prefect_server")
def test_a_build_waiting_for_a_locked_database_stops_at_once(tmp_path: Path) -> None:
    """Waiting for another program to release the database is not publishing yet: a signal
    then stops the build at once, and truthfully."""
    warehouse = tmp_path / "warehouse.duckdb"
    code = (
        "import duckdb, sys, time; duckdb.connect(sys.argv[1]).close(); "
        "c = duckdb.connect(sys.argv[1], read_only=True); print('ready', flush=True); "
        "time.sleep(120)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(warehouse)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        data = {"name": "people", "rows": 500, "columns": SAMPLER_COLUMNS}
        data["output"] = {"dir": str(tmp_path / "out"), "duckdb": str(warehouse)}
        build = _start(write_config(tmp_path / "people.yaml", data), _api_env())
        versions = tmp_path / "out" / ".versions"
        _wait_for(lambda: versions.is_dir() and any(versions.iterdir()))  # parts moved: waiting
        time.sleep(0.5)
        stopped = time.monotonic()
        build.send_signal(signal.SIGTERM)
        _, stderr = build.communicate(timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert time.monotonic() - stopped < 10
    assert "interrupted (SIGTERM): nothing published" in stderr
    assert table_counts(warehouse) == {}
