"""prefect.yaml's two routes against a real Prefect server (one started for this module, whose
deployment concurrency retries wait 1 s instead of 30): `prefect deploy` records the pull step
unresolved and the worker's clone finds the configs; `synthaix serve` never takes over a
deployment of a work pool (`--suffix` serves beside it); overlapping runs of an append
deployment run one after the other."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as ds
import pytest
import yaml

from conftest import write_config
from synthaix.asof import as_utc
from synthaix.build.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
FLOW = "build-dataset"
SYNTHAIX = Path(sys.executable).with_name("synthaix")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect API server on SQLite in a temp folder; yields the environment for the
    subprocesses that use it, and points this process's client at it meanwhile."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    }
    server_env = env | {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",  # no background services: less load on the machine
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
    }
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait(
            lambda: _healthy(url), 120, "the Prefect server to start", process, home / "server.log"
        )
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield env | {"PREFECT_API_URL": url}
    finally:
        _stop(process)
        log.close()


@pytest.fixture(scope="module")
def deployed(server: dict[str, str]) -> list[str]:
    """Two deployments of prefect.yaml made by `prefect deploy`, in the work pool synthaix."""
    names = ["orders-hourly-append", "customers-nightly"]
    _deploy(server, *names)
    return names


def test_prefect_deploy_keeps_the_pull_step_unresolved_and_the_append_limit(
    deployed: list[str],
) -> None:
    deployment = _read("orders-hourly-append")
    assert deployment.work_pool_name == "synthaix"
    # The Variable is read by the worker at each run, not by `prefect deploy`.
    assert deployment.pull_steps == [
        {
            "prefect.deployments.steps.git_clone": {
                "repository": "{{ prefect.variables.synthaix_repository }}",
                "clone_directory_name": "synthaix",
            }
        }
    ]
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert _read("customers-nightly").global_concurrency_limit is None


def test_serve_refuses_a_deployment_of_a_work_pool_and_leaves_it_unchanged(
    server: dict[str, str], deployed: list[str]
) -> None:
    from flows.serve import checked_deployments
    from synthaix.errors import ConfigError

    names = deployed
    before = {name: _read(name).model_dump() for name in names}

    with pytest.raises(ConfigError) as refused:
        checked_deployments(ROOT / "prefect.yaml", only=names)
    message = str(refused.value)
    assert "\n" not in message and "work pool synthaix" in message
    assert all(f"{FLOW}/{name}" in message for name in names)
    assert "--suffix" in refused.value.hint

    # The command itself: refuses in one line (exit 2) instead of serving.
    cli = subprocess.run(
        [str(SYNTHAIX), "serve", "--only", "orders-hourly-append"],
        cwd=ROOT,
        env=server,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert cli.returncode == 2, cli.stdout + cli.stderr
    error, hint = cli.stderr.strip().splitlines()
    assert error.startswith(f"error: {FLOW}/orders-hourly-append already exists in work pool")
    assert hint.startswith("hint: serve beside it under other names: synthaix serve --suffix")

    # With --suffix, serve registers its own deployments beside them, and may do so again.
    for _ in range(2):
        for deployment in checked_deployments(ROOT / "prefect.yaml", only=names, suffix="-local"):
            deployment.apply()
    served = _read("orders-hourly-append-local")
    assert served.work_pool_name is None and served.pull_steps in (None, [])
    assert served.parameters["config_path"] == str(ROOT / "configs" / "orders.yaml")
    assert served.global_concurrency_limit.limit == 1

    assert {name: _read(name).model_dump() for name in names} == before


def test_pull_step_clones_the_repository_named_by_the_variable(
    server: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from prefect.deployments.steps.core import run_steps
    from prefect.variables import Variable

    from synthaix.config import load_config

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    source = _repository(tmp_path / "source")
    for index, url in enumerate((str(source), source.as_uri())):  # a path, a file:// URL
        workdir = tmp_path / f"run-{index}"
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        Variable.set("synthaix_repository", url, overwrite=True)
        output = asyncio.run(run_steps(spec["pull"]))
        clone = workdir / output["directory"]
        assert clone == workdir / "synthaix"
        # The worker starts the run in the clone: entrypoint and config paths resolve there.
        for deployment in spec["deployments"]:
            assert (clone / deployment["entrypoint"].split(":")[0]).is_file()
            load_config(clone / deployment["parameters"]["config_path"])


def test_overlapping_runs_of_an_append_deployment_run_one_after_the_other(
    server: dict[str, str], tmp_path: Path
) -> None:
    from prefect import get_client

    config = write_config(
        tmp_path / "tiny.yaml",
        {
            "name": "tiny",
            "rows": 10,
            "seed": 3,
            "chunk_size": 20,
            "columns": [
                {"name": "id", "type": "sequence", "start": 1},
                {"name": "amount", "type": "integer", "min": 1, "max": 100},
                {"name": "at", "type": "datetime", "start": "-1h", "end": "now"},
            ],
            "output": {"dir": str(tmp_path / "out")},
        },
    )
    # An entry as in prefect.yaml, with no concurrency_limit: serve gives any append one.
    parameters = {"config_path": config.name, "rows": 40, "mode": "append"}
    entry = {"name": "tiny-append", "entrypoint": "flows/build_dataset.py:build_dataset"}
    spec = write_config(
        tmp_path / "prefect.yaml", {"deployments": [entry | {"parameters": parameters}]}
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serving = subprocess.Popen(
            [str(SYNTHAIX), "serve", "--file", str(spec), "--only", "tiny-append"],
            cwd=tmp_path,
            env=server | {"PREFECT_RUNNER_POLL_FREQUENCY": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with get_client(sync_client=True) as client:
            deployment = _wait(
                lambda: _read("tiny-append", missing_ok=True), 180, "serve", serving, log
            )
            runs = [client.create_flow_run_from_deployment(deployment.id) for _ in range(2)]

            def finished() -> list[Any] | None:
                now = [client.read_flow_run(run.id) for run in runs]
                return now if all(run.state.is_final() for run in now) else None

            runs = _wait(finished, 240, "both flow runs to finish", serving, log)
            states = [[s.name for s in client.read_flow_run_states(run.id)] for run in runs]
    finally:
        _stop(serving)
    assert [run.state.name for run in runs] == ["Completed", "Completed"], (states, _tail(log))
    first, second = sorted(runs, key=lambda run: run.start_time)
    assert first.end_time <= second.start_time  # one after the other, never both at once
    assert any("AwaitingConcurrencySlot" in names for names in states)  # held back, then run
    table = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table()
    assert table.num_rows == len(set(table["id"].to_pylist())) == 80  # both appends, distinct
    # No as_of given: each run's data stands at its scheduled start (Prefect's DateTime).
    # (A queued run's expected start moves when it gets its slot: a second, at most.)
    slots = sorted(as_utc(run.expected_start_time) for run in runs)
    as_of = read_manifest(tmp_path / "out").dataset_config().as_of
    assert abs(as_of - slots[-1]) <= dt.timedelta(seconds=2), (as_of, slots)
    at = table["at"].to_pylist()
    assert slots[0] - dt.timedelta(hours=1) <= min(at) and max(at) < slots[-1]


def _deploy(env: dict[str, str], *names: str) -> None:
    """`prefect deploy` of prefect.yaml's deployments `names`, into the work pool synthaix."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name="synthaix", type="process"))
    command = [str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy"]
    for name in names:
        command += ["--name", name]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


def _read(name: str, missing_ok: bool = False) -> Any:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(f"{FLOW}/{name}")
        except ObjectNotFound:
            if missing_ok:
                return None
            raise


def _repository(path: Path) -> Path:
    """A git repository holding this checkout's flows, tasks, configs and prefect.yaml."""
    path.mkdir()
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("flows", "tasks", "configs"):
        shutil.copytree(ROOT / folder, path / folder, ignore=ignore)
    shutil.copy(ROOT / "prefect.yaml", path)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=path, check=True)
    return path


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(
    probe: Callable[[], Any], timeout: float, what: str, process: subprocess.Popen, log: Path
) -> Any:
    """The first truthy value of `probe`, polled until `timeout` seconds or `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited ({process.returncode}):\n{_tail(log)}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout} s waiting for {what}:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""


def _stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, with whatever it started (flow runs)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the children left, if any
    process.wait(timeout=20)
